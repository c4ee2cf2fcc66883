package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// Transport is reverse_proxy's HTTP transport with one difference: it dials
// by opening a stream through the tunnel session that the dial address
// (from the inlets upstream source) names. Keep-alive, timeouts, buffer
// sizes and the rest are HTTPTransport's, with one default changed: it
// keeps up to 256 idle connections per client (HTTPTransport keeps 32),
// since an idle connection here is a yamux stream, and opening one costs a
// round trip through the tunnel and a dial by the client. The tunnel
// carries HTTP/1.1.
//
// To compose it yourself:
//
//	reverse_proxy {
//		dynamic inlets
//		transport inlets
//	}
type Transport struct {
	*reverseproxy.HTTPTransport

	reg *registry.Registry
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.inlets",
		New: func() caddy.Module { return new(Transport) },
	}
}

// defaultIdleStreamsPerClient is how many idle keep-alive connections
// (streams) the transport keeps to each client unless configured with
// keepalive_idle_conns_per_host. Caddy's reverse_proxy keeps 32 per
// upstream, fewer than the concurrent requests of a busy site: with 50
// visitors' connections, one request in eight then opened a new stream.
const defaultIdleStreamsPerClient = 256

// Provision sets up the embedded HTTPTransport and replaces its dialer.
func (t *Transport) Provision(ctx caddy.Context) error {
	reg, err := registry.FromContext(ctx)
	if err != nil {
		return err
	}
	t.reg = reg
	if t.HTTPTransport == nil {
		t.HTTPTransport = new(reverseproxy.HTTPTransport)
	}
	if t.TLS != nil {
		return fmt.Errorf("the inlets transport does not speak TLS to clients: the tunnel is already encrypted when clients use wss://, and each client chooses http:// or https:// for its own upstream")
	}
	t.Versions = []string{"1.1"}
	if t.KeepAlive == nil {
		t.KeepAlive = new(reverseproxy.KeepAlive)
	}
	if t.KeepAlive.MaxIdleConnsPerHost == 0 {
		t.KeepAlive.MaxIdleConnsPerHost = defaultIdleStreamsPerClient
	}
	if err := t.HTTPTransport.Provision(ctx); err != nil {
		return err
	}
	t.Transport.DialContext = t.dial
	// The tunnel is the only way to a client: never a forward proxy from
	// the environment.
	t.Transport.Proxy = nil
	return nil
}

// dial opens a stream to the session and host that addr names. It
// returns once the client has connected its upstream.
func (t *Transport) dial(_ context.Context, _, addr string) (net.Conn, error) {
	id, index, ok := registry.ParseDialAddress(addr)
	if !ok {
		return nil, reverseproxy.NewDialError(fmt.Errorf("%s is not an inlets dial address: use the inlets transport with the inlets upstream source", addr))
	}
	s := t.reg.Session(id)
	if s == nil || index >= len(s.Hello.HTTP) {
		return nil, reverseproxy.NewDialError(fmt.Errorf("tunnel session %d has ended", id))
	}
	conn, err := s.OpenStream(tunnel.StreamHeader{Kind: tunnel.KindHTTP, Host: s.Hello.HTTP[index].Host})
	if err != nil {
		return nil, dialFailure{err}
	}
	return conn, nil
}

// dialFailure is a failed dial that reverse_proxy recognises as one (it
// then tries another client, whatever the request's method) and that
// still tells what failed.
type dialFailure struct{ cause error }

func (e dialFailure) Error() string   { return e.cause.Error() }
func (e dialFailure) Unwrap() []error { return []error{reverseproxy.NewDialError(e.cause), e.cause} }

// RoundTrip is HTTPTransport's, but for a client that reports its
// upstream unreachable: when another client serves the host, the dial
// error has reverse_proxy try that one; when none does, the visitor gets
// a 502 at once, rather than after reverse_proxy's retries.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.HTTPTransport.RoundTrip(req)
	var ue *registry.UpstreamError
	if err == nil || !errors.As(err, &ue) || t.otherClientUp(req) {
		return resp, err
	}
	body := "502 Bad Gateway: the tunnel client could not reach the upstream for " + tunnel.HostOnly(req.Host) + "\n"
	return &http.Response{
		Status:        "502 Bad Gateway",
		StatusCode:    http.StatusBadGateway,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// otherClientUp reports whether a client other than the one req was sent
// to serves req's host and has not reported its upstream unreachable.
func (t *Transport) otherClientUp(req *http.Request) bool {
	id, _, _ := registry.ParseDialAddress(req.URL.Host)
	for _, rt := range t.reg.Lookup(req.Host) {
		if rt.Session.ID != id && rt.Up() {
			return true
		}
	}
	return false
}

// UnmarshalCaddyfile takes the options of reverse_proxy's http transport
// (keepalive, dial_timeout, read_buffer, ...) except tls and versions:
//
//	transport inlets {
//		<http transport options...>
//	}
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if t.HTTPTransport == nil {
		t.HTTPTransport = new(reverseproxy.HTTPTransport)
	}
	return t.HTTPTransport.UnmarshalCaddyfile(d)
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Transport)(nil)
	_ caddy.CleanerUpper    = (*Transport)(nil)
	_ caddyfile.Unmarshaler = (*Transport)(nil)
)
