package status

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestStatusURLFromAClientURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8123":                    "http://127.0.0.1:8123/status",
		"wss://tunnel.example.com":               "https://tunnel.example.com/status",
		"wss://tunnel.example.com/":              "https://tunnel.example.com/status",
		"wss://tunnel.example.com/connect":       "https://tunnel.example.com/status",
		"https://example.com/inlets/connect":     "https://example.com/inlets/status",
		"https://example.com/inlets":             "https://example.com/inlets/status",
		"http://127.0.0.1:8123/status":           "http://127.0.0.1:8123/status",
		"http://127.0.0.1:8123/connect?x=1#frag": "http://127.0.0.1:8123/status",
		"https://[::1]:8123":                     "https://[::1]:8123/status",
	} {
		got, err := StatusURL(in)
		if err != nil || got != want {
			t.Errorf("StatusURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"tunnel.example.com:8123", "ftp://x", "http://", "::"} {
		if got, err := StatusURL(bad); err == nil {
			t.Errorf("StatusURL(%q) = %q, want an error", bad, got)
		}
	}
}

const validStatus = `{"info":{"version":"v1","sha":"abc","mode":"http","startTime":"2026-01-02T12:00:00Z","hostname":"h"},"clients":[{"clientID":"c1","remoteAddr":"127.0.0.1:1","since":"2026-01-02T12:01:00Z","upstreams":["*=http://127.0.0.1:8080"],"mode":"http","version":"v1"}]}`

func TestFetchTellsItsFailuresApart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status":
			if r.Header.Get("Authorization") != "Bearer right" {
				http.Error(w, "inlets: missing or wrong token", http.StatusUnauthorized)
				return
			}
			w.Write([]byte(validStatus))
		case "/web/status":
			w.Write([]byte("<html>hello</html>"))
		case "/api/status":
			w.Write([]byte(`{"status":"ok"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, raw, err := Fetch(ctx, srv.Client(), strings.Replace(srv.URL, "http", "ws", 1), "right")
	if err != nil || string(raw) != validStatus || s.Info.Mode != "http" || len(s.Clients) != 1 || s.Clients[0].ClientID != "c1" {
		t.Fatalf("valid status: %+v %q %v", s, raw, err)
	}
	for _, tt := range []struct{ url, token, want string }{
		{srv.URL, "wrong", "refused the token (HTTP 401): give the server's token with --token or --token-file"},
		{srv.URL + "/nothing/here", "right", "/nothing/here/status is not an inlets control plane: it answered HTTP 404"},
		{srv.URL + "/web", "right", "/web/status is not an inlets control plane: its answer is not inlets status JSON"},
		{srv.URL + "/api", "right", "/api/status is not an inlets control plane: its answer is not inlets status JSON"},
		{"http://" + closed, "right", fmt.Sprintf("cannot reach http://%s/status: dial tcp %s: connect: connection refused", closed, closed)},
	} {
		_, _, err := Fetch(ctx, srv.Client(), tt.url, tt.token)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s with token %q: got %v, want one line containing %q", tt.url, tt.token, err, tt.want)
		}
	}
}
