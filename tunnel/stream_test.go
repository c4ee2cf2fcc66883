package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hashicorp "github.com/hashicorp/yamux"
)

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// streamPair opens a stream from the server's side and accepts it on the
// client's.
func streamPair(t *testing.T, server, client *Session) (s, c *Stream) {
	t.Helper()
	s, err := server.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c, err = client.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return s, c
}

// A stream closed before its peer has finished is reset on both sides at
// once: a peer writing into a full window gets an error, and neither
// yamux session keeps the stream, or what it had buffered.
func TestCloseResetsAStreamThePeerStillWrites(t *testing.T) {
	server, client := muxPair(t)
	s, c := streamPair(t, server, client)

	// The client writes until the server's window is full; the server
	// reads nothing.
	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Write(buf)
			written.Add(int64(n))
			if err != nil {
				wrote <- err
				return
			}
		}
	}()
	eventually(t, "the client fills the server's window", func() bool {
		return written.Load() >= MinStreamWindow-1
	})
	s.Close()

	select {
	case err := <-wrote:
		if !errors.Is(err, ErrStreamReset) {
			t.Fatalf("the client's blocked write: %v, want ErrStreamReset", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's write is still blocked after the server closed the stream")
	}
	c.Close()
	eventually(t, "both sessions forget the stream", func() bool {
		return server.mux.NumStreams() == 1 && client.mux.NumStreams() == 1 && server.Streams() == 0 && client.Streams() == 0
	})
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v, want net.ErrClosed", err)
	}
	// The session carries on.
	s2, c2 := streamPair(t, server, client)
	s2.Close()
	c2.Close()
}

// CloseWrite is a half-close: the peer reads EOF and can still answer;
// once both have finished, Close is a plain end, not a reset.
func TestCloseWriteIsAHalfCloseAndCloseAfterItIsNoReset(t *testing.T) {
	server, client := muxPair(t)
	s, c := streamPair(t, server, client)

	if _, err := s.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "request" {
		t.Fatalf("the client read %q, %v; want the request then EOF", got, err)
	}
	if _, err := c.Write([]byte("answer after EOF")); err != nil {
		t.Fatal(err)
	}
	c.Close() // the server has finished: a FIN, not a reset
	got, err = io.ReadAll(s)
	if err != nil || string(got) != "answer after EOF" {
		t.Fatalf("the server read %q, %v; want the answer then EOF, not a reset", got, err)
	}
	s.Close()
	eventually(t, "both sessions forget the stream", func() bool {
		return server.mux.NumStreams() == 1 && client.mux.NumStreams() == 1
	})
	if err := server.Err(); err != nil {
		t.Fatal(err)
	}
}

// The watchdog ends a session whose client stops answering once the
// server has sent it something, and only then.
func TestWatchdogEndsASessionWhoseClientStopsAnswering(t *testing.T) {
	cws, sws := wsPair(t)
	server, err := ServerSession(NewConn(sws, ServerSide), Config{ProbeAfter: 100 * time.Millisecond, AnswerTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	// The client's side: a WebSocket that nobody reads, as a frozen
	// process's.
	_ = cws
	time.Sleep(500 * time.Millisecond) // idle: the watchdog must not fire
	select {
	case <-server.Done():
		t.Fatal("the watchdog ended an idle session")
	default:
	}
	// The control stream's frames call for no answer.
	ctrl, err := server.openControl()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write([]byte("accept"))
	time.Sleep(500 * time.Millisecond)
	select {
	case <-server.Done():
		t.Fatal("the watchdog ended a session for a control message")
	default:
	}
	st, err := server.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st.Write([]byte("anyone there?"))
	select {
	case <-server.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session of a client that answers nothing is still up")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("the session ended after %s, before the probe and the answer timeout (300ms)", took)
	}
	if err := server.Err(); err == nil || !strings.Contains(err.Error(), "the client answered nothing for 300ms") {
		t.Errorf("Err: %v", err)
	}
}

// A client busy with a slow upstream sends nothing for a while; the
// watchdog's ping, which its yamux answers, is what keeps the session: the
// client sends no other byte meanwhile (no keep-alive is due, and a small
// read sends no window update), so without the ping the session would end.
func TestWatchdogSparesAClientThatAnswersPingsWhileItsUpstreamIsSlow(t *testing.T) {
	const probe, answer = 100 * time.Millisecond, 400 * time.Millisecond
	server, client := muxPairWith(t, Config{ProbeAfter: probe, AnswerTimeout: answer}, Config{})
	s, c := streamPair(t, server, client)
	// Let everything the client owes the server arrive first: the
	// session's first round-trip measurements (a ping each way), and the
	// stream's acknowledgement, which its first bytes follow.
	eventually(t, "the first RTT measurements", func() bool { return server.RTT() > 0 && client.RTT() > 0 })
	c.Write([]byte("ready"))
	if _, err := io.ReadFull(s, make([]byte, len("ready"))); err != nil {
		t.Fatal(err)
	}
	// A request whose answer takes four times the watchdog's bound.
	s.Write([]byte("slow request"))
	io.ReadFull(c, make([]byte, len("slow request")))
	time.Sleep(4 * (probe + answer)) // the upstream's slowness
	c.Write([]byte("answer"))
	if _, err := io.ReadFull(s, make([]byte, len("answer"))); err != nil {
		t.Fatalf("the slow answer: %v (session error %v)", err, server.Err())
	}
	if err := server.Err(); err != nil {
		t.Fatal(err)
	}
}

// rawClient is the client's side of a session as stock yamux
// (hashicorp's), which can do what the protocol forbids: with it the
// server still works, since both speak yamux's spec.md.
func rawClient(t *testing.T) (server *Session, client *hashicorp.Session) {
	cws, sws := wsPair(t)
	server, err := ServerSession(NewConn(sws, ServerSide), Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := hashicorp.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	cfg.ConnectionWriteTimeout = time.Second // a ping's wait for its answer
	client, err = hashicorp.Server(NewConn(cws, ClientSide), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// What a client may not do costs the server a bounded amount, and the
// session goes on: streams it opens are reset, pings are answered
// without a goroutine each, bytes past its hello stop at the control
// stream's first window.
func TestServerBoundsWhatAClientMayNotDo(t *testing.T) {
	server, client := rawClient(t)
	ctrl, err := server.openControl()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write([]byte("hello?"))
	cctrl, err := client.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(cctrl, make([]byte, 6))
	before := runtime.NumGoroutine()

	// A stream the client opens is reset.
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("hi"))
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, hashicorp.ErrConnectionReset) {
		t.Fatalf("a stream the client opened: %v, want it reset", err)
	}
	// A flood of pings: the server answers a bounded backlog of them,
	// with no goroutine each, and once the flood is over, the next.
	var pings sync.WaitGroup
	for range 1000 {
		pings.Go(func() { client.Ping() })
	}
	if n := runtime.NumGoroutine(); n > before+1000+100 {
		t.Fatalf("%d goroutines during the pings, %d before", n, before)
	}
	pings.Wait()
	if _, err := client.Ping(); err != nil {
		t.Fatalf("a ping after the flood: %v", err)
	}
	// Bytes past the hello: the control stream takes its first window,
	// which the server never reads, and no more.
	cctrl.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := cctrl.Write(make([]byte, 2*MinStreamWindow))
	if err == nil || n > MinStreamWindow {
		t.Fatalf("the client wrote %d bytes past its hello (%v), want at most %d", n, err, MinStreamWindow)
	}
	// The session goes on.
	s, c := streamPairRaw(t, server, client)
	s.Write([]byte("still there"))
	if _, err := io.ReadFull(c, make([]byte, len("still there"))); err != nil {
		t.Fatal(err)
	}
}

// streamPairRaw is streamPair with a stock yamux client.
func streamPairRaw(t *testing.T, server *Session, client *hashicorp.Session) (*Stream, *hashicorp.Stream) {
	t.Helper()
	s, err := server.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// A version 2 server runs hashicorp/yamux and sends a Go Away once it has
// read the hello: a client of this version keeps its session, and serves
// the streams that server opens.
func TestClientKeepsItsSessionWithAVersion2ServersGoAway(t *testing.T) {
	cws, sws := wsPair(t)
	client, err := ClientSession(NewConn(cws, ClientSide), Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := hashicorp.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	server, err := hashicorp.Client(NewConn(sws, ServerSide), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	ctrl, err := server.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write([]byte("control"))
	if _, err := client.acceptControl(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := server.GoAway(); err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("a visitor"))
	c, err := client.Accept(context.Background())
	if err != nil {
		t.Fatalf("after the server's Go Away: %v", err)
	}
	got := make([]byte, len("a visitor"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "a visitor" {
		t.Fatalf("read %q, %v", got, err)
	}
	select {
	case <-client.Done():
		t.Fatal("the client's session ended")
	default:
	}
}
