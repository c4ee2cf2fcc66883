package yamux

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// The round trip is measured at once and again every MeasureRTTInterval,
// from a timer: a session costs no goroutine of its own for it, and once
// closed it measures no more.
func TestRTTIsMeasuredFromATimerUntilTheSessionCloses(t *testing.T) {
	cc, sc := net.Pipe()
	cfg := DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.MeasureRTTInterval = 10 * time.Millisecond
	before := runtime.NumGoroutine()
	client, err := Client(cc, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(sc, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Each session's recv and send loops, and nothing more between
	// measurements (a measurement in progress runs on the timer's
	// goroutine for its round trip).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		server.pingLock.Lock()
		measured := server.pingID
		server.pingLock.Unlock()
		if measured >= 3 && runtime.NumGoroutine()-before <= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d measurements (want 3 or more), %d goroutines more than before the sessions (want 4 at most)", measured, runtime.NumGoroutine()-before)
		}
	}
	if server.RTT() == 0 || client.RTT() == 0 {
		t.Fatalf("RTT %v and %v after the measurements", server.RTT(), client.RTT())
	}
	server.Close()
	client.Close()
	server.rttLock.Lock()
	stopped := server.rttTimer == nil
	server.rttLock.Unlock()
	if !stopped {
		t.Fatal("the closed session's measuring timer is still set")
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines more than before the sessions, 5s after they closed", runtime.NumGoroutine()-before)
		}
	}
}

// A session whose connection is dead when it starts closes at once, and
// leaves no measuring timer behind to keep it alive.
func TestASessionThatClosesAtOnceLeavesNoTimer(t *testing.T) {
	for range 100 {
		cc, sc := net.Pipe()
		sc.Close()
		cfg := DefaultConfig()
		cfg.LogOutput = io.Discard
		s, err := Client(cc, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		<-s.CloseChan()
		s.Close()
		s.rttLock.Lock()
		left := s.rttTimer != nil
		s.rttLock.Unlock()
		if left {
			t.Fatal("a session closed before it started still has its measuring timer")
		}
	}
}
