package client

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// An h2:// upstream must choose HTTP/2 by ALPN: one that speaks only
// HTTP/1.1 over TLS, or that chooses no protocol, is refused with the
// fix; an https:// upstream is never given HTTP/2, whatever the server
// prefers.
func TestH2UpstreamMustAgreeToHTTP2(t *testing.T) {
	h1 := httptest.NewUnstartedServer(http.NotFoundHandler())
	h1.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	h1.StartTLS()
	t.Cleanup(h1.Close)
	h2 := httptest.NewUnstartedServer(http.NotFoundHandler())
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "https://") }

	c, err := New(Config{URL: "ws://127.0.0.1:1", Token: "t", UpstreamTLS: &tls.Config{InsecureSkipVerify: true},
		HTTP: []tunnel.HTTPUpstream{
			{Host: "h1.example.com", URL: "h2://" + addr(h1)},
			{Host: "h2.example.com", URL: "h2://" + addr(h2)},
			{Host: "https.example.com", URL: "https://" + addr(h2)},
		}})
	if err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewTLSServer(http.NotFoundHandler()) // no ALPN at all
	t.Cleanup(plain.Close)
	c.http["plain.example.com"] = &httpUpstream{host: "plain.example.com", url: mustURL(t, "h2://"+addr(plain)), addr: addr(plain)}
	const fix = "did not agree to HTTP/2 (ALPN h2) over TLS: for an HTTP/1.1 upstream, write https://"
	for _, tt := range []struct{ host, proto, err string }{
		{"h1.example.com", "", fix},
		{"plain.example.com", "", fix},
		{"h2.example.com", "h2", ""},
		{"https.example.com", "", ""},
	} {
		conn, err := c.dialHTTP(context.Background(), c.http[tt.host])
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v, want %q", tt.host, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.host, err)
		}
		if got := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != tt.proto && (tt.proto != "" || got == "h2") {
			t.Errorf("%s: negotiated %q, want %q", tt.host, got, tt.proto)
		}
		conn.Close()
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := tunnel.ParseUpstreamURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
