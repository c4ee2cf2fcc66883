package yamux

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// pair is a client and a server session over a TCP connection on
// loopback.
func pair(t *testing.T) (client, server *Session) {
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
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	cfg := DefaultConfig()
	cfg.LogOutput = io.Discard
	if client, err = Client(cc, cfg, nil); err != nil {
		t.Fatal(err)
	}
	if server, err = Server(sc, cfg, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A stream whose reader keeps up grows its window, and every window
// update tells the sender all the credit the receiver counts as granted:
// once the transfer is over, the sender's credit is the receiver's.
// Upstream's v5.1.0 drops the reader's freed credit from the update that
// grows the window; the two sides then drift apart at each growth, and
// the transfer stalls for good once the receiver believes the sender
// holds half a window of credit it does not have.
func TestGrowthKeepsBothSidesCreditInStep(t *testing.T) {
	client, server := pair(t)
	for deadline := time.Now().Add(5 * time.Second); client.RTT() == 0 || server.RTT() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no RTT measured")
		}
	}
	// A long round trip, as if over a real link: a window used up within
	// four of them grows, however slow the machine is today. On loopback
	// the measured one is tens of microseconds, and under load no epoch
	// may be that short, so the window would never grow and the test
	// would prove nothing. The next measurement is 30s away.
	atomic.StoreInt64(&server.rtt, int64(time.Second))
	atomic.StoreInt64(&client.rtt, int64(time.Second))
	const n = 256 << 20
	var sender atomic.Pointer[Stream]
	go func() {
		st, err := client.OpenStream(t.Context())
		if err != nil {
			return
		}
		sender.Store(st)
		buf := make([]byte, 64<<10)
		for sent := 0; sent < n; sent += len(buf) {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
		st.CloseWrite()
	}()
	receiver, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	var got int
	for {
		receiver.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := receiver.Read(buf)
		got += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d MiB of %d, the window at %d KiB: %v", got>>20, n>>20, receiver.recvWindow>>10, err)
		}
	}
	if receiver.recvWindow <= initialStreamWindow {
		t.Fatalf("the window never grew (%d KiB): the test proves nothing", receiver.recvWindow>>10)
	}
	granted := func() uint32 {
		receiver.recvBuf.bm.Lock()
		defer receiver.recvBuf.bm.Unlock()
		return receiver.recvBuf.cap
	}
	// The last window update may still be on its way.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		have := atomic.LoadUint32(&sender.Load().sendWindow)
		if have == granted() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver counts %d bytes of credit granted, the sender has %d (window %d KiB)", granted(), have, receiver.recvWindow>>10)
		}
	}
}

// A normal Go Away from the peer stops this side opening streams, and
// nothing else: the streams the peer opens go on.
func TestNormalGoAwayKeepsTheSession(t *testing.T) {
	client, server := pair(t)
	// A stream of the client's, opened before the Go Away.
	st, err := client.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("hi"))
	before, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := server.GoAway(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if atomic.LoadInt32(&client.remoteGoAway) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Go Away never came")
		}
	}
	if client.IsClosed() {
		t.Fatal("the session ended on a normal Go Away")
	}
	if _, err := client.OpenStream(t.Context()); err != ErrRemoteGoAway {
		t.Fatalf("opening a stream after the peer's Go Away: %v, want ErrRemoteGoAway", err)
	}
	// The stream opened before goes on.
	st.Write([]byte(" again"))
	got := make([]byte, len("hi again"))
	before.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(before, got); err != nil || string(got) != "hi again" {
		t.Fatalf("the stream opened before the Go Away read %q, %v", got, err)
	}
	// The server still opens streams, which the client accepts.
	go func() {
		s, err := server.OpenStream(t.Context())
		if err == nil {
			s.Write([]byte("still here"))
		}
	}()
	for {
		in, err := client.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len("still here"))
		in.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(in, got); err == nil && string(got) == "still here" {
			return
		}
	}
}

// The peer writes a last message and closes the connection: the message,
// which arrived before the end, is read before the stream's error.
func TestDataThatArrivedIsReadAfterTheSessionEnds(t *testing.T) {
	client, server := pair(t)
	st, err := client.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("hello"))
	in, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(in, make([]byte, 5))
	st.Write([]byte("goodbye"))
	// The message is in the server's buffer before the connection ends.
	for deadline := time.Now().Add(5 * time.Second); in.recvBuf.Len() < uint32(len("goodbye")); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the last message never arrived")
		}
	}
	client.Close()
	// The session is over once it has let go of its streams.
	for deadline := time.Now().Add(5 * time.Second); server.NumStreams() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server's session kept its streams")
		}
	}
	got, err := io.ReadAll(in)
	if string(got) != "goodbye" || err == nil {
		t.Fatalf("after the session's end: %q, %v; want the last message, then an error", got, err)
	}
}

// slowConn takes a while over each write, as a busy link: the frames a
// session queues wait in its queue.
type slowConn struct{ net.Conn }

func (c slowConn) Write(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return c.Conn.Write(p)
}

// Frames written just before Close leave, in order, before the
// connection closes.
func TestAFrameQueuedBeforeCloseIsSent(t *testing.T) {
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
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.LogOutput = io.Discard
	client, err := Client(slowConn{cc}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(<-accepted, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	st, err := client.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("hello;"))
	in, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	want := "hello;"
	for i := range 20 {
		msg := fmt.Sprintf("message %d;", i)
		st.Write([]byte(msg))
		want += msg
	}
	client.Close()
	got, _ := io.ReadAll(in)
	if string(got) != want {
		t.Fatalf("the peer read %q of %q, written before Close", got, want)
	}
}
