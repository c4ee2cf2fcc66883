package client

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// The server counts a connection attempt under the client's mode before it
// knows the token is right, from the X-Inlets-Mode header.
func TestClientNamesItsModeWhenItConnects(t *testing.T) {
	modes := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		modes <- r.Header.Get(tunnel.ModeHeader)
		http.Error(w, "inlets: missing or wrong token", http.StatusUnauthorized)
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{HTTP: []tunnel.HTTPUpstream{{Host: "app.example.com", URL: "http://127.0.0.1:1"}}}, tunnel.ModeHTTP},
		{Config{TCP: []tunnel.TCPUpstream{{Port: 2222, Upstream: "127.0.0.1:22"}}}, tunnel.ModeTCP},
	} {
		tt.cfg.URL, tt.cfg.Token = url, "wrong"
		tt.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		c, err := New(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		select {
		case got := <-modes:
			if got != tt.want {
				t.Errorf("%s client sent %s: %q", tt.want, tunnel.ModeHeader, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s client did not connect", tt.want)
		}
		cancel()
		<-done
		for len(modes) > 0 {
			<-modes
		}
	}
}

// rejectingServer answers every client's hello with a rejection of code,
// and counts the connections.
func rejectingServer(t *testing.T, code, reason string) (url string, conns chan time.Time) {
	conns = make(chan time.Time, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		conns <- time.Now()
		sess, err := tunnel.ServerSession(tunnel.NewConn(ws, tunnel.ServerSide), tunnel.Config{})
		if err != nil {
			return
		}
		defer sess.Close()
		ctrl, _, _, err := tunnel.ReadHello(sess)
		if err != nil {
			return
		}
		tunnel.RejectClient(ctrl, tunnel.Reject(code, "%s", reason))
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), conns
}

// The retry class of a rejection decides the wait: a server shutting down
// is tried again at once; one whose refusal retrying cannot change, after
// the longest backoff, and the client says so in one line.
func TestRejectionsRetryClassDecidesTheBackoff(t *testing.T) {
	for _, tt := range []struct {
		code    string
		minWait time.Duration
		maxWait time.Duration
		logged  string
	}{
		{tunnel.RejectShuttingDown, 0, 400 * time.Millisecond, "server asked the client to reconnect"},
		{tunnel.RejectHostNotAllowed, 900 * time.Millisecond, 3 * time.Second, "server refuses this client, and trying again cannot help"},
	} {
		url, conns := rejectingServer(t, tt.code, "because "+tt.code)
		logger, logged := testenvLogger()
		c, err := New(Config{URL: url, Token: "t", Logger: logger, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
			HTTP: []tunnel.HTTPUpstream{{Host: "a.example.com", URL: "http://127.0.0.1:9"}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		first := <-conns
		var second time.Time
		select {
		case second = <-conns:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the client did not come back", tt.code)
		}
		cancel()
		<-done
		if wait := second.Sub(first); wait < tt.minWait || wait > tt.maxWait {
			t.Errorf("%s: came back after %s, want between %s and %s", tt.code, wait, tt.minWait, tt.maxWait)
		}
		if out := logged(); !strings.Contains(out, tt.logged) || !strings.Contains(out, "because "+tt.code) {
			t.Errorf("%s: the client logged %q, want %q with the reason", tt.code, out, tt.logged)
		}
	}
}

// testenvLogger is a logger whose lines the returned function gives back.
func testenvLogger() (*slog.Logger, func() string) {
	var mu sync.Mutex
	var b strings.Builder
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return b.Write(p)
	})
	return slog.New(slog.NewTextHandler(w, nil)), func() string {
		mu.Lock()
		defer mu.Unlock()
		return b.String()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
