package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
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
	s, err := server.Open()
	if err != nil {
		t.Fatal(err)
	}
	// yamux sends the stream's SYN with its first frame.
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
		return server.NumStreams() == 1 && client.NumStreams() == 1
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
		return server.NumStreams() == 1 && client.NumStreams() == 1
	})
	if err := server.Err(); err != nil {
		t.Fatal(err)
	}
}

// The watchdog ends a session whose client stops answering once the
// server has sent it something, and only then.
func TestWatchdogEndsASessionWhoseClientStopsAnswering(t *testing.T) {
	cws, sws := wsPair(t)
	server, err := ServerSession(NewConn(sws, ServerSide), ServerConfig{ProbeAfter: 100 * time.Millisecond, AnswerTimeout: 200 * time.Millisecond})
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
	ctrl, err := server.Open()
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
	st, err := server.Open()
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

func TestWatchdogSparesAClientThatAnswersPingsWhileItsUpstreamIsSlow(t *testing.T) {
	cws, sws := wsPair(t)
	server, err := ServerSession(NewConn(sws, ServerSide), ServerConfig{ProbeAfter: 100 * time.Millisecond, AnswerTimeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ClientSession(NewConn(cws, ClientSide), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	s, c := streamPair(t, server, client)
	// A request whose answer takes ten times the watchdog's bound: the
	// client's yamux answers the pings meanwhile.
	s.Write([]byte("slow request"))
	io.ReadFull(c, make([]byte, len("slow request")))
	time.Sleep(2 * time.Second) // the upstream's slowness
	c.Write([]byte("answer"))
	if _, err := io.ReadFull(s, make([]byte, len("answer"))); err != nil {
		t.Fatalf("the slow answer: %v (session error %v)", err, server.Err())
	}
}

// rawClient is the client's side of a session as stock yamux, which can
// do what the protocol forbids.
func rawClient(t *testing.T) (server *Session, client *yamux.Session) {
	cws, sws := wsPair(t)
	server, err := ServerSession(NewConn(sws, ServerSide), ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	client, err = yamux.Server(NewConn(cws, ClientSide), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestServerEndsASessionWhoseClientBreaksTheProtocol(t *testing.T) {
	for name, tt := range map[string]struct {
		abuse func(t *testing.T, server *Session, client *yamux.Session)
		want  string
	}{
		"the client opens a stream": {func(t *testing.T, _ *Session, client *yamux.Session) {
			st, err := client.OpenStream()
			if err == nil {
				st.Write([]byte("hi"))
			}
		}, "the client opened a stream"},
		"the client floods pings": {func(t *testing.T, _ *Session, client *yamux.Session) {
			for range 3 * pingBurst {
				go client.Ping()
			}
		}, "pings a second"},
		"the client writes past its hello": {func(t *testing.T, server *Session, client *yamux.Session) {
			go server.Open()
			ctrl, err := client.AcceptStream()
			if err != nil {
				return
			}
			ctrl.Write(make([]byte, MaxHandshakeSize+16))
		}, "more than its hello"},
	} {
		t.Run(name, func(t *testing.T) {
			server, client := rawClient(t)
			tt.abuse(t, server, client)
			select {
			case <-server.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the server kept the session")
			}
			if err := server.Err(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Err: %v, want it to say %q", err, tt.want)
			}
		})
	}
}
