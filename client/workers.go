package client

import "time"

// A stream is served on a goroutine kept from an earlier stream when one
// is idle, rather than on a new one. Serving a stream dials its upstream,
// whose call chain is deep: a new goroutine's stack grows, and is copied,
// at nearly every stream, which took about 7% of a client's CPU serving a
// new TCP connection per request. A kept goroutine has grown already.
//
// Idle workers wait workerIdle for the next stream and then end: after a
// burst, the goroutines (and their stacks) the burst needed are gone
// within workerIdle; there are never more than the streams being served
// and those that ended within workerIdle.
var idleWorkers = make(chan func())

const workerIdle = time.Second

// goServe runs f on an idle worker, or on a new goroutine that stays a
// worker once f returns.
func goServe(f func()) {
	select {
	case idleWorkers <- f:
	default:
		go worker(f)
	}
}

func worker(f func()) {
	f()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case f = <-idleWorkers:
			f()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		}
	}
}
