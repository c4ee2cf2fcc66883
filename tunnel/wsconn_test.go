package tunnel

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsPair returns the two ends of a real WebSocket over loopback.
func wsPair(t testing.TB) (client, server *websocket.Conn) {
	t.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{ReadBufferSize: 512}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		accepted <- ws
	}))
	t.Cleanup(srv.Close)
	dialer := &websocket.Dialer{}
	c, _, err := dialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func TestConnCarriesABytestreamAcrossMessages(t *testing.T) {
	cws, sws := wsPair(t)
	client, server := NewConn(cws, ClientSide), NewConn(sws, ServerSide)

	// One write larger than a message is split; the reader sees one stream.
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*MaxMessageSize)/16+7)
	go func() {
		if _, err := client.Write(data); err != nil {
			t.Error(err)
		}
		// Many small writes, read back with a buffer that spans them.
		for i := range 100 {
			client.Write([]byte{byte(i)})
		}
		client.Close()
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes changed in transit")
	}
	small := make([]byte, 100)
	if _, err := io.ReadFull(server, small); err != nil {
		t.Fatal(err)
	}
	for i, b := range small {
		if b != byte(i) {
			t.Fatalf("byte %d is %d", i, b)
		}
	}
	if _, err := server.Read(small); err == nil {
		t.Fatal("read after the peer closed succeeded")
	}
}

func TestConnRefusesTextAndOversizedMessages(t *testing.T) {
	cws, sws := wsPair(t)
	server := NewConn(sws, ServerSide)
	cws.WriteMessage(websocket.TextMessage, []byte("hello"))
	if _, err := server.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "want binary") {
		t.Fatalf("text message: %v", err)
	}

	cws, sws = wsPair(t)
	server = NewConn(sws, ServerSide)
	cws.WriteMessage(websocket.BinaryMessage, make([]byte, MaxMessageSize+1))
	if _, err := io.ReadAll(server); err == nil || !strings.Contains(err.Error(), "read limit") {
		t.Fatalf("oversized message: %v", err)
	}
}

func TestConnAddresses(t *testing.T) {
	cws, sws := wsPair(t)
	client, server := NewConn(cws, ClientSide), NewConn(sws, ServerSide)
	if client.RemoteAddr().String() != server.LocalAddr().String() {
		t.Fatalf("client remote %s != server local %s", client.RemoteAddr(), server.LocalAddr())
	}
	var _ net.Conn = client
}

// Each Write is one message, split only past MaxMessageSize: Conn knows
// nothing of what it carries.
func TestConnSendsEachWriteAsOneMessage(t *testing.T) {
	cws, sws := wsPair(t)
	client := NewConn(cws, ClientSide)
	big := bytes.Repeat([]byte("x"), MaxMessageSize+10)
	for _, w := range [][]byte{[]byte("a header"), []byte("a body"), big} {
		client.Write(w)
	}
	for i, w := range [][]byte{[]byte("a header"), []byte("a body"), big[:MaxMessageSize], big[MaxMessageSize:]} {
		_, got, err := sws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(got), len(w))
		}
	}
}

func TestConnIdleTimeoutEndsASilentPeerOnly(t *testing.T) {
	const idle = 200 * time.Millisecond
	cws, sws := wsPair(t)
	server := NewConn(sws, ServerSide)
	server.SetIdleTimeout(idle)

	// A peer that keeps speaking keeps the reader alive for longer than
	// the timeout in all: each message restarts it. The reader reads a
	// message only once it is sent, so that no read waits, however the
	// two goroutines are scheduled.
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range 6 {
			cws.WriteMessage(websocket.BinaryMessage, []byte{1})
			sent <- struct{}{}
			time.Sleep(idle / 2) // pacing, so that the whole outlasts idle
		}
	}()
	start := time.Now()
	buf := make([]byte, 1)
	for range sent {
		if _, err := server.Read(buf); err != nil {
			t.Fatalf("read from a talking peer after %s: %v", time.Since(start), err)
		}
	}
	if took := time.Since(start); took < idle {
		t.Fatalf("the talking took %s, less than the timeout: the test proves nothing", took)
	}
	// Then silence.
	start = time.Now()
	if _, err := server.Read(buf); err == nil || time.Since(start) < idle {
		t.Fatalf("a silent peer: err %v after %s, want an error after at least %s", err, time.Since(start), idle)
	}
}

func TestConnFramesReachThePeerIntactBothWays(t *testing.T) {
	cws, sws := wsPair(t)
	client, server := NewConn(cws, ClientSide), NewConn(sws, ServerSide)
	for _, dir := range []struct {
		name     string
		from, to *Conn
	}{{"server to client", server, client}, {"client to server (masked)", client, server}} {
		// Sizes around each length encoding, and one above a message.
		for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000, MaxMessageSize + 3} {
			chunk := bytes.Repeat([]byte{byte(n)}, n)
			go dir.from.Write(chunk)
			got := make([]byte, n)
			if _, err := io.ReadFull(dir.to, got); err != nil {
				t.Fatalf("%s, %d bytes: %v", dir.name, n, err)
			}
			if !bytes.Equal(got, chunk) {
				t.Fatalf("%s: %d bytes changed in transit", dir.name, n)
			}
		}
	}
}

func TestConnCloseSendsWhatIsQueuedFirst(t *testing.T) {
	cws, sws := wsPair(t)
	client, server := NewConn(cws, ClientSide), NewConn(sws, ServerSide)
	// As when the server rejects a client: the reason, then Close at once.
	if _, err := server.Write([]byte("rejected: the reason")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err := io.ReadAll(client)
	if string(got) != "rejected: the reason" {
		t.Fatalf("the peer read %q (%v) before the end", got, err)
	}
	if _, err := server.Write([]byte("more")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

func TestConnWriterToAStalledPeerIsReleasedByClose(t *testing.T) {
	_, sws := wsPair(t) // the client never reads
	server := NewConn(sws, ServerSide)
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := server.Write(chunk); err != nil {
				done <- err
				return
			}
		}
	}()
	// The writer fills the socket's buffers and then maxPending, and waits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		server.writeMu.Lock()
		full := server.pending != nil && len(*server.pending) >= maxPending
		server.writeMu.Unlock()
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never filled the pending buffer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	server.Close()
	if took := time.Since(start); took > closeFlushTimeout+time.Second {
		t.Fatalf("Close took %s with a stalled peer", took)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the blocked Write returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked Write is still blocked after Close")
	}
}

// RFC 6455, section 5.5: a Ping is answered with a Pong carrying its data,
// and a Close with a Close, on both sides.
func TestConnAnswersPingWithPongAndCloseWithClose(t *testing.T) {
	for _, side := range []bool{ServerSide, ClientSide} {
		cws, sws := wsPair(t)
		peer, ours := cws, sws
		if side == ClientSide {
			peer, ours = sws, cws
		}
		conn := NewConn(ours, side)
		go io.Copy(io.Discard, conn) // the session's reader
		pongs := make(chan string, 1)
		peer.SetPongHandler(func(data string) error { pongs <- data; return nil })
		closes := make(chan int, 1)
		peer.SetCloseHandler(func(code int, _ string) error { closes <- code; return nil })
		go func() {
			for {
				if _, _, err := peer.NextReader(); err != nil {
					return
				}
			}
		}()
		peer.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second))
		select {
		case got := <-pongs:
			if got != "are you there" {
				t.Errorf("side %v: pong %q", side, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("side %v: no pong", side)
		}
		peer.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second))
		select {
		case code := <-closes:
			if code != websocket.CloseGoingAway {
				t.Errorf("side %v: close code %d", side, code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("side %v: no close answered", side)
		}
	}
}
