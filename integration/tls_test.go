package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// TestWSSThroughCaddysAutomaticHTTPS runs the control plane and the data
// plane over HTTPS with a certificate from Caddy's internal CA: the client
// connects with wss:// trusting that CA, and visitors are served over TLS.
func TestWSSThroughCaddysAutomaticHTTPS(t *testing.T) {
	up := newUpstream(t, "app")
	port := testenv.FreePort(t)
	testenv.StartCaddy(t, adminPort, "", fmt.Sprintf("https://localhost:%d, https://app.localhost:%d {\n\ttls internal\n\t%s\n}", port, port, inletsBoth))

	roots, _ := caddyRoots(t)

	cfg := testenv.HTTPClient(fmt.Sprintf("wss://localhost:%d", port), "app.localhost", up.URL)
	cfg.TLS = &tls.Config{RootCAs: roots}
	testenv.Client(t, cfg)

	// Visitors resolve app.localhost to this machine.
	visitor := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
		},
	}}
	resp, err := visitor.Get(fmt.Sprintf("https://app.localhost:%d/secure", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("visitor over HTTPS: %s %d %s", resp.Proto, resp.StatusCode, body)
	}
}

// TestUpstreamsWithHTTPSAndPathPrefix serves one host from an https://
// upstream (self-signed, so the client skips verification) and another
// from an upstream URL with a path prefix: each request reaches its own
// upstream, the first over TLS, the second under the prefix.
func TestUpstreamsWithHTTPSAndPathPrefix(t *testing.T) {
	plain := newUpstream(t, "prefixed")
	secure := httptest.NewTLSServer(newUpstream(t, "secure").Config.Handler)
	t.Cleanup(secure.Close)
	addr, _ := server(t, inletsBoth)

	cfg := testenv.HTTPClient("ws://"+addr,
		"secure.example.com", secure.URL,
		"prefixed.example.com", plain.URL+"/api/v1")
	cfg.UpstreamTLS = &tls.Config{InsecureSkipVerify: true}
	testenv.Client(t, cfg)

	code, e := request(t, http.MethodGet, addr, "secure.example.com", "/items", nil)
	if code != http.StatusOK || e.Upstream != "secure" || !e.TLS || e.Path != "/items" || e.Host != "secure.example.com" {
		t.Errorf("https upstream: %d %+v, want the secure upstream, over TLS", code, e)
	}
	code, e = request(t, http.MethodGet, addr, "prefixed.example.com", "/items?id=7", nil)
	if code != http.StatusOK || e.Upstream != "prefixed" || e.TLS || e.Path != "/api/v1/items" || e.Host != "prefixed.example.com" || e.XFF != "127.0.0.1" {
		t.Errorf("path prefix upstream: %d %+v, want the prefixed upstream under /api/v1", code, e)
	}
	ws := dialWebsocket(t, addr, "prefixed.example.com", "/ws")
	echoOnce(t, ws, "prefixed", "through the prefix proxy")
}
