package tunnel

import (
	"sync"
	"sync/atomic"
	"time"
)

// watchdog ends a session whose peer has stopped answering, within a
// bound, without costing an idle session anything: no goroutine, no timer
// running, no ping.
//
// It wakes only when Conn sends the peer something that calls for an
// answer (data, or a new stream, other than the control stream's: the
// handshake has its own timeout, and the server's later messages call
// for none) while the peer has been heard since it last did. If the peer then sends nothing at all for probe, the watchdog
// pings it; if it still sends nothing for timeout more, the peer is taken
// to be gone (a frozen process, a dropped link) and onDead runs. Any byte
// from the peer counts as an answer, so a peer busy sending is never
// pinged, and a healthy peer that is slow to serve a request answers the
// ping in one round trip.
type watchdog struct {
	conn           *Conn
	probe, timeout time.Duration
	onDead         func()

	// since is when the peer was first sent something it has not
	// answered, in UnixNano; 0 once the peer has been heard since.
	since atomic.Int64
	// timer runs check; it is stopped while since is 0.
	timer *time.Timer

	// mu guards pinged and nextPing.
	mu sync.Mutex
	// pinged is the value of since the last ping was sent for.
	pinged int64
	// nextPing is the opaque value of the next ping. yamux numbers its
	// own pings from 0, and ignores an answer to a ping it did not send.
	nextPing uint32
	dead     bool
}

func newWatchdog(c *Conn, probe, timeout time.Duration, onDead func()) *watchdog {
	w := &watchdog{conn: c, probe: probe, timeout: timeout, onDead: onDead, nextPing: 1 << 31}
	w.timer = time.AfterFunc(time.Hour, w.check)
	w.timer.Stop()
	return w
}

// spoke notes that the peer was sent something it should answer.
func (w *watchdog) spoke() {
	if w.since.Load() != 0 {
		return
	}
	if w.since.CompareAndSwap(0, time.Now().UnixNano()) {
		w.timer.Reset(w.probe)
	}
}

// heard notes that the peer sent something.
func (w *watchdog) heard() {
	if w.since.Load() != 0 {
		w.since.Store(0)
	}
}

func (w *watchdog) stop() { w.timer.Stop() }

// check runs when the peer may have been silent for probe, or for probe
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
			w.nextPing++
			w.conn.writeMu.Lock()
			w.conn.sendFrame(pingFrame(w.nextPing))
			w.conn.writeMu.Unlock()
		}
		w.timer.Reset(w.probe + w.timeout - waited)
		return
	}
	w.dead = true
	go w.onDead()
}
