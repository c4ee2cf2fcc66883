package client

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
