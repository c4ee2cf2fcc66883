package tunnel

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// relay joins two TCP pairs: visitor ⇄ [a ⇄ b] ⇄ upstream.
func relay(t *testing.T, idle time.Duration) (visitor, upstream *net.TCPConn, done chan struct{}) {
	return relayHandshake(t, 0, idle)
}

// relayHandshake is relay with JoinHandshake, a being the visitor's side.
func relayHandshake(t *testing.T, handshake, idle time.Duration) (visitor, upstream *net.TCPConn, done chan struct{}) {
	visitor, a := tcpPair(t)
	b, upstream := tcpPair(t)
	done = make(chan struct{})
	go func() {
		JoinHandshake(a, b, handshake, idle)
		close(done)
	}()
	return visitor, upstream, done
}

func TestJoinPassesHalfCloseAndKeepsTheReply(t *testing.T) {
	visitor, upstream, done := relay(t, 0)
	visitor.Write([]byte("request"))
	visitor.CloseWrite()

	got, err := io.ReadAll(upstream) // ends only if the half-close arrived
	if err != nil || string(got) != "request" {
		t.Fatalf("upstream read %q, %v", got, err)
	}
	upstream.Write([]byte("response after EOF"))
	upstream.Close()

	reply, err := io.ReadAll(visitor)
	if err != nil || string(reply) != "response after EOF" {
		t.Fatalf("visitor read %q, %v", reply, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Join did not return after both directions ended")
	}
}

func TestJoinEndsAfterIdleTimeoutButNotWhileOneWayIsBusy(t *testing.T) {
	const idle = 200 * time.Millisecond
	visitor, upstream, done := relay(t, idle)

	// Traffic in one direction only, for several idle periods: the quiet
	// direction must not time the relay out.
	go func() {
		tick := time.NewTicker(idle / 4)
		defer tick.Stop()
		for range 12 {
			upstream.Write([]byte("tick"))
			<-tick.C
		}
	}()
	buf := make([]byte, 4*12)
	if _, err := io.ReadFull(visitor, buf); err != nil {
		t.Fatalf("one-way traffic was cut: %v", err)
	}

	// Then silence: the relay ends and both ends are closed, quietly.
	visitor.SetReadDeadline(time.Now().Add(10 * idle))
	if n, err := visitor.Read(buf); err != io.EOF {
		t.Fatalf("after idle: read %d bytes, %v; want EOF", n, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Join did not return after the idle timeout")
	}
}

func TestJoinClosesBothSidesWhenOneIsReset(t *testing.T) {
	visitor, upstream, done := relay(t, 0)
	visitor.SetLinger(0)
	visitor.Close() // RST

	// The reset is passed on: the upstream is reset too, not just closed.
	upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(upstream); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("upstream should see the relay reset it: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Join did not return after a reset")
	}
}

// A visitor that sends its hello, gets the upstream's answer and goes
// silent is let go after the handshake timeout, not the idle one; one
// that answered back has the idle timeout.
func TestJoinHandshakeLetsASilentVisitorGoEarly(t *testing.T) {
	const handshake, idle = 200 * time.Millisecond, time.Minute
	exchange := func(visitor, upstream *net.TCPConn) {
		t.Helper()
		visitor.Write([]byte("client hello"))
		buf := make([]byte, len("client hello"))
		if _, err := io.ReadFull(upstream, buf); err != nil {
			t.Fatal(err)
		}
		upstream.Write([]byte("server hello"))
		if _, err := io.ReadFull(visitor, buf); err != nil {
			t.Fatal(err)
		}
	}

	visitor, upstream, done := relayHandshake(t, handshake, idle)
	exchange(visitor, upstream)
	start := time.Now()
	select {
	case <-done:
		t.Logf("a silent visitor was let go %s after the upstream's answer", time.Since(start).Round(time.Millisecond))
	case <-time.After(idle / 2):
		t.Fatal("a visitor silent after the upstream's answer was kept past the handshake timeout")
	}

	// Past the handshake, the relay stays through several handshake
	// timeouts of quiet: with an idle timeout, and with none (0).
	for _, idle := range []time.Duration{idle, 0} {
		visitor, upstream, done = relayHandshake(t, handshake, idle)
		exchange(visitor, upstream)
		visitor.Write([]byte("finished"))
		buf := make([]byte, len("finished"))
		if _, err := io.ReadFull(upstream, buf); err != nil {
			t.Fatal(err)
		}
		// Waiting is what is tested here; nothing is synchronised by it.
		select {
		case <-done:
			t.Fatalf("idle timeout %s: a visitor past its handshake was let go", idle)
		case <-time.After(5 * handshake):
		}
		upstream.Write([]byte("data"))
		if _, err := io.ReadFull(visitor, buf[:4]); err != nil {
			t.Fatalf("idle timeout %s: the relay after the handshake: %v", idle, err)
		}
	}
}
