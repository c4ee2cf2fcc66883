package handler

import (
	"context"
	"fmt"
	"net"

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
	reg, err := loadRegistry(ctx)
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

// dial opens a stream to the session and host that addr names.
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
		return nil, reverseproxy.NewDialError(err)
	}
	return conn, nil
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
