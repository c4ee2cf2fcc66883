package tunnel

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// watchdog ends a server's session whose client has stopped answering,
// within a bound, without costing an idle session anything: no goroutine,
// no timer running, no ping.
//
// It wakes only when the server sends the client something that calls for
// an answer (data, or a new stream, on a data stream: the handshake has
// its own timeout, and the server's later control messages call for none)
// while the client has been heard since it last did. If the client then
// sends nothing at all for probe, the watchdog pings it; if it still sends
// nothing for timeout more, the client is taken to be gone (a frozen
// process, a dropped link) and the session ends. Any byte from the client
// counts as an answer (its Conn reports each read), so a client busy
// sending is never pinged, and a healthy client that is slow to serve a
// request answers the ping in one round trip.
type watchdog struct {
	sess           *Session
	probe, timeout time.Duration

	// since is when the client was first sent something it has not
	// answered, in UnixNano; 0 once it has been heard since.
	since atomic.Int64
	// timer runs check; it is stopped while since is 0.
	timer *time.Timer

	// mu guards pinged and dead.
	mu sync.Mutex
	// pinged is the value of since the last ping was sent for.
	pinged int64
	dead   bool
}

func newWatchdog(s *Session, probe, timeout time.Duration) *watchdog {
	w := &watchdog{sess: s, probe: probe, timeout: timeout}
	w.timer = time.AfterFunc(time.Hour, w.check)
	w.timer.Stop()
	return w
}

// spoke notes that the client was sent something it should answer.
func (w *watchdog) spoke() {
	if w.since.Load() != 0 {
		return
	}
	if w.since.CompareAndSwap(0, time.Now().UnixNano()) {
		w.timer.Reset(w.probe)
	}
}

// heard notes that the client sent something.
func (w *watchdog) heard() {
	if w.since.Load() != 0 {
		w.since.Store(0)
	}
}

func (w *watchdog) stop() { w.timer.Stop() }

// check runs when the client may have been silent for probe, or for probe
// and timeout.
func (w *watchdog) check() {
	since := w.since.Load()
	if since == 0 {
		return
	}
	waited := time.Since(time.Unix(0, since))
	if waited < w.probe {
		w.timer.Reset(w.probe - waited)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead {
		return
	}
	if waited < w.probe+w.timeout {
		if w.pinged != since {
			w.pinged = since
			// yamux's ping waits for its answer; the answer's bytes are
			// what counts, through heard.
			go w.sess.mux.Ping()
		}
		w.timer.Reset(w.probe + w.timeout - waited)
		return
	}
	w.dead = true
	go w.sess.end(fmt.Errorf("the client answered nothing for %s", w.probe+w.timeout))
}
