package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
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
// round trip through the tunnel and a dial by the client. A host whose
// client announced an HTTP/2 upstream (h2c:// or h2://) is served by a
// second HTTPTransport of the same options that speaks h2c (HTTP/2 with
// prior knowledge) on its streams, as reverse_proxy does to an h2c://
// upstream: one stream per client and host carries every request, gRPC's
// streaming calls and trailers included. The others carry HTTP/1.1.
//
// To compose it yourself:
//
//	reverse_proxy {
//		dynamic inlets
//		transport inlets
//	}
type Transport struct {
	*reverseproxy.HTTPTransport

	// h2c serves the hosts of HTTP/2 upstreams.
	h2c *reverseproxy.HTTPTransport
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
	reg, err := app.FromContext(ctx)
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
	if len(t.Versions) > 0 {
		// Earlier releases ignored it as well, speaking HTTP/1.1 always.
		ctx.Logger().Warn("the inlets transport ignores versions: each client's upstream URL chooses the HTTP of its host's streams (http:// and https:// HTTP/1.1, h2c:// and h2:// HTTP/2)",
			zap.Strings("versions", t.Versions))
		t.Versions = nil
	}
	if t.KeepAlive == nil {
		t.KeepAlive = new(reverseproxy.KeepAlive)
	}
	if t.KeepAlive.MaxIdleConnsPerHost == 0 {
		t.KeepAlive.MaxIdleConnsPerHost = defaultIdleStreamsPerClient
	}
	// The HTTP/2 transport is a copy of the options, before Provision
	// fills in what it derives from them.
	options, err := json.Marshal(t.HTTPTransport)
	if err != nil {
		return err
	}
	t.h2c = new(reverseproxy.HTTPTransport)
	if err := json.Unmarshal(options, t.h2c); err != nil {
		return err
	}
	t.Versions = []string{"1.1"}
	t.h2c.Versions = []string{"h2c"}
	for _, h := range []*reverseproxy.HTTPTransport{t.HTTPTransport, t.h2c} {
		if err := h.Provision(ctx); err != nil {
			return err
		}
		// The tunnel is the only way to a client: never a forward proxy
		// from the environment.
		h.Transport.Proxy = nil
	}
	t.Transport.DialContext = t.dial
	t.h2c.Transport.DialContext = t.dialHTTP2
	return nil
}

// target is the session and announced host that req's dial address
// names, nil when it names none (the session ended: dial says so).
func (t *Transport) target(req *http.Request) (*registry.Session, *tunnel.HTTPUpstream) {
	id, index, ok := registry.ParseDialAddress(req.URL.Host)
	if !ok {
		return nil, nil
	}
	s := t.reg.Session(id)
	if s == nil || index >= len(s.Hello.HTTP) {
		return nil, nil
	}
	return s, &s.Hello.HTTP[index]
}

// forHost is the transport that speaks what the upstream of host speaks.
func (t *Transport) forHost(host *tunnel.HTTPUpstream) *reverseproxy.HTTPTransport {
	if host != nil && host.HTTP2() {
		return t.h2c
	}
	return t.HTTPTransport
}

// dialHTTP2 opens a stream as dial does, and waits for the client's reply
// before the transport writes HTTP/2's preface: the stream will carry
// every request to the client's host, so a round trip is little to pay
// once, and a client that cannot reach its upstream fails the dial, which
// reverse_proxy retries on another client whatever the request's method
// (an HTTP/2 transport does not report a failure after the dial as the
// dial's).
func (t *Transport) dialHTTP2(ctx context.Context, _, addr string) (net.Conn, error) {
	conn, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// net/http dials with a context that never ends: the reply gets the
	// transport's dial_timeout, past which the dial fails, and
	// reverse_proxy tries another client.
	if d := time.Duration(t.h2c.DialTimeout); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	// The stream is a *tunnel.DataConn, under its tunnel's bandwidth
	// caps or not.
	if err := conn.(interface{ AwaitReply(context.Context) error }).AwaitReply(ctx); err != nil {
		conn.Close()
		return nil, dialFailure{err}
	}
	return conn, nil
}

// dial opens a stream to the session and host that addr names, and
// returns without waiting for the client's reply: the request follows
// the stream's header at once. A client that replies it could not reach
// its upstream fails the connection with a *registry.UpstreamError, on
// which RoundTrip sends the request to another client: the stream does
// not move by itself, so that a kept-alive connection in the pool of a
// client's dial address always leads to that client.
func (t *Transport) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	id, index, ok := registry.ParseDialAddress(addr)
	if !ok {
		return nil, reverseproxy.NewDialError(fmt.Errorf("%s is not an inlets dial address: use the inlets transport with the inlets upstream source", addr))
	}
	s := t.reg.Session(id)
	if s == nil || index >= len(s.Hello.HTTP) {
		return nil, dialFailure{fmt.Errorf("tunnel session %d: %w", id, errSessionEnded)}
	}
	h := tunnel.StreamHeader{Kind: tunnel.KindHTTP, Host: s.Hello.HTTP[index].Host}
	conn, err := registry.Dial(ctx, h, []*registry.Session{s})
	if err != nil {
		return nil, dialFailure{err}
	}
	return conn, nil
}

// Cleanup closes the idle connections of both transports.
func (t *Transport) Cleanup() error {
	err := t.HTTPTransport.Cleanup()
	if t.h2c != nil {
		if err2 := t.h2c.Cleanup(); err == nil {
			err = err2
		}
	}
	return err
}

// errSessionEnded is the dial error of a session that has ended.
var errSessionEnded = errors.New("the tunnel session has ended")

// dialFailure is a failed dial that reverse_proxy recognises as one (it
// then tries another client, whatever the request's method) and that
// still tells what failed.
type dialFailure struct{ cause error }

func (e dialFailure) Error() string   { return e.cause.Error() }
func (e dialFailure) Unwrap() []error { return []error{reverseproxy.NewDialError(e.cause), e.cause} }

// RoundTrip is HTTPTransport's, with the retry a tunnel allows. A client
// that replies it could not reach its upstream has forwarded nothing of
// the request (it connects before it forwards, and drops what it was
// sent), so the request goes to another client serving the host, whatever
// its method, body included: what the transport read of the body before
// the reply is kept for that (at most what the tunnel sends before a
// reply, tunnel.MaxEarlyData, and the transport's buffer). When no other
// client is up, the visitor gets a 502 at once, rather than after
// reverse_proxy's retries.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	s, host := t.target(req)
	if resp := t.visitorRefused(req, s); resp != nil {
		return resp, nil
	}
	inner := t.forHost(host)
	var body *keptBody
	// An HTTP/2 stream is refused at its dial, before the transport has
	// read any of the body: only HTTP/1.1's early data needs it kept. The
	// HTTP/2 transport may close the body while it reads it.
	if req.Body != nil && req.Body != http.NoBody {
		req = req.WithContext(req.Context()) // a copy, for its own Body
		if inner == t.HTTPTransport {
			body = &keptBody{r: req.Body}
			req.Body = body
		} else {
			vb, _ := req.Context().Value(visitorBodyKey{}).(*visitorBody)
			req.Body = &closeAfterRead{body: req.Body, visitor: vb}
		}
	}
	var tried map[uint64]bool
	start := time.Now()
	for {
		resp, err := inner.RoundTrip(req)
		if resp := grpcReset(req, err, start); resp != nil {
			return resp, nil
		}
		// A session that ended after the request was routed to it (its
		// client vanished) is as a client that could not reach its
		// upstream: another client, or a 502 at once, rather than
		// reverse_proxy's retries until lb_try_duration and its 503.
		var ue *registry.UpstreamError
		if err == nil || !errors.As(err, &ue) && !errors.Is(err, errSessionEnded) {
			return resp, err
		}
		id, _, _ := registry.ParseDialAddress(req.URL.Host)
		if tried == nil {
			tried = make(map[uint64]bool)
		}
		tried[id] = true
		next := t.otherClientUp(req, tried)
		if next == "" {
			return badGateway(req), nil
		}
		if body != nil && !body.rewind() {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.URL.Host = next
		if body != nil {
			req.Body = body
		}
		_, host = t.target(req)
		inner = t.forHost(host)
	}
}

// visitorRefused holds a request that did not come through the inlets
// handler (a site's own reverse_proxy with `transport inlets`) to its
// tunnel's visitors policy, and answers one it refuses (s is the session
// of its dial address, nil for none): the address lists
// and the rate as the handler does; a tunnel that asks for
// authentication, which only the handler runs, refuses it rather than
// let it by.
func (t *Transport) visitorRefused(req *http.Request, s *registry.Session) *http.Response {
	if s == nil {
		return nil
	}
	if checked, ok := caddyhttp.GetVar(req.Context(), varChecked).(string); ok && checked == s.Tunnel {
		return nil
	}
	p := t.reg.VisitorPolicy(s.Tunnel)
	if p == nil {
		return nil
	}
	host := tunnel.HostOnly(req.Host)
	if p.Auth() != nil {
		metrics.VisitorRefused(s.Tunnel, "http", registry.RefusedAuth)
		if c := t.reg.Logger().Check(zap.WarnLevel, "refused a visitor of a tunnel with basic_auth or forward_auth that came through a reverse_proxy of the site's own, which cannot run them: serve its hosts with the inlets directive"); c != nil {
			c.Write(zap.String("tunnel", s.Tunnel), zap.String("host", host))
		}
		return textResponse(req, http.StatusForbidden, nil, "403 Forbidden: "+host+" asks its visitors to authenticate, which this route of the server cannot do")
	}
	addr := clientAddr(req)
	reason, wait := t.reg.RefuseVisitor(s.Tunnel, p, registry.VisitRequest, "http", addr)
	if reason == "" {
		return nil
	}
	status, msg := refusal(reason, addr, host, wait)
	var header http.Header
	if status == http.StatusTooManyRequests {
		header = http.Header{"Retry-After": {retryAfter(wait)}}
	}
	return textResponse(req, status, header, msg)
}

// grpcReset answers a gRPC call whose h2c upstream reset its stream with
// CANCEL, as the upstream's gRPC server does when the call's deadline
// (grpc-timeout) passes, with the status a gRPC client gives such a reset
// when it is the client: DEADLINE_EXCEEDED once the deadline has passed,
// CANCELLED before. reverse_proxy would answer a 502, which the caller
// sees as UNAVAILABLE, or DEADLINE_EXCEEDED when its own timer happens
// to fire first. nil for any other request or error.
func grpcReset(req *http.Request, err error, start time.Time) *http.Response {
	var se http2.StreamError
	if err == nil || !errors.As(err, &se) || se.Code != http2.ErrCodeCancel || !isGRPC(req.Header.Get("Content-Type")) {
		return nil
	}
	status, msg := "1", "the upstream cancelled the call"
	if timeout, ok := grpcTimeout(req.Header.Get("Grpc-Timeout")); ok && time.Since(start) >= timeout {
		status, msg = "4", "the call's deadline passed at the upstream"
	}
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        http.Header{"Content-Type": {"application/grpc"}},
		Trailer:       http.Header{"Grpc-Status": {status}, "Grpc-Message": {msg}},
		Body:          http.NoBody,
		ContentLength: -1,
		Request:       req,
	}
}

// isGRPC: the content type of a gRPC call over HTTP/2
// ("application/grpc", "+proto", "+json", ...), not gRPC-Web's, whose
// status is in its body.
func isGRPC(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcTimeout parses a grpc-timeout header: at most 8 digits and a unit
// (H, M, S, m, u, n).
func grpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > uint64(math.MaxInt64/unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// badGateway is the 502 of a host whose clients cannot reach their
// upstream.
func badGateway(req *http.Request) *http.Response {
	return textResponse(req, http.StatusBadGateway, nil, "502 Bad Gateway: the tunnel client could not reach the upstream for "+tunnel.HostOnly(req.Host))
}

// textResponse is an answer of the transport's own: status, with header,
// and msg as its text.
func textResponse(req *http.Request, status int, header http.Header, msg string) *http.Response {
	body := msg + "\n"
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "text/plain; charset=utf-8")
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// otherClientUp is the dial address of a client, not one of tried, that
// serves req's host and has not reported its upstream unreachable lately;
// "" if there is none.
func (t *Transport) otherClientUp(req *http.Request, tried map[uint64]bool) string {
	for _, rt := range t.reg.Lookup(req.Host) {
		if !tried[rt.Session.ID] && rt.Up() {
			return rt.Dial()
		}
	}
	return ""
}

// keptBody is a request body that keeps what is read of it, up to
// maxKept, so that it can be sent again from its start. Close does not
// close it: the transport closes the body of a request that failed, and
// the next try reads on.
type keptBody struct {
	r    io.ReadCloser
	kept []byte
	// replay is how much of kept the next reads return before reading r
	// on; over is set once more than maxKept was read.
	replay int
	over   bool
}

// maxKept bounds keptBody: what the tunnel sends before a client's reply,
// with room for the transport's write buffer.
const maxKept = tunnel.MaxEarlyData + 64<<10

func (b *keptBody) Read(p []byte) (int, error) {
	if b.replay < len(b.kept) {
		n := copy(p, b.kept[b.replay:])
		b.replay += n
		return n, nil
	}
	n, err := b.r.Read(p)
	if !b.over {
		if len(b.kept)+n > maxKept {
			b.over, b.kept = true, nil
		} else {
			b.kept = append(b.kept, p[:n]...)
			b.replay = len(b.kept)
		}
	}
	return n, err
}

func (b *keptBody) Close() error { return nil }

// rewind starts the body again from its first byte; false if more than
// maxKept of it was read, and it cannot.
func (b *keptBody) rewind() bool {
	b.replay = 0
	return !b.over
}

// closeAfterRead keeps reverse_proxy's wrapper of a request body from
// being closed while it is being read. The HTTP/2 transport (h2c
// upstreams) closes the body from a goroutine of its own when the stream
// ends before the body is sent, a refusal for instance, to unblock its
// writer's Read; the wrapper (bodyNopCloserIfNotRead in Caddy 2.11)
// counts the bytes read without a lock, so that is a data race. A Close
// during a Read is done by that Read when it returns, on the wrapper.
// An HTTP/2 or HTTP/3 visitor's body is closed at once under the wrapper,
// which ends the Read; an HTTP/1.1 body cannot end a Read by its Close
// (it waits for the Read), so that Read ends when the visitor sends more
// or goes, as in plain reverse_proxy. Without the visitor's body (a
// site's own reverse_proxy with `transport inlets`, which the handler did
// not see; or a request the handler routed to HTTP/1.1 upstreams only,
// retried on a client that came since) a Close goes through at once, as
// in plain reverse_proxy. A
// Close before the first Read reaches the wrapper, which leaves a body of
// which nothing was read open (so that it can be sent again): a Read
// after it waits for the visitor, as in plain reverse_proxy.
type closeAfterRead struct {
	body    io.ReadCloser // reverse_proxy's wrapper
	visitor *visitorBody  // under it; nil if unknown

	mu      sync.Mutex
	reading bool
	closing bool // a Close came during the Read in flight
}

func (b *closeAfterRead) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.reading = true
	b.mu.Unlock()
	n, err := b.body.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	if b.closing {
		b.closing = false
		b.body.Close()
	}
	return n, err
}

func (b *closeAfterRead) Close() error {
	b.mu.Lock()
	if !b.reading || b.visitor == nil {
		// Held, so that no Read starts meanwhile.
		defer b.mu.Unlock()
		return b.body.Close()
	}
	b.closing = true
	b.mu.Unlock()
	if b.visitor.endsRead {
		return b.visitor.Close()
	}
	return nil
}

// visitorBody is a visitor's request body as the handler gives it to
// reverse_proxy, in the request's context (visitorBodyKey) for
// closeAfterRead. It is closed once. endsRead: its Close ends a Read in
// flight (HTTP/2's and HTTP/3's; HTTP/1.1's waits for it).
type visitorBody struct {
	io.ReadCloser
	endsRead bool
	once     sync.Once
	err      error
}

func (b *visitorBody) Close() error {
	b.once.Do(func() { b.err = b.ReadCloser.Close() })
	return b.err
}

// visitorBodyKey is the context key of a request's *visitorBody.
type visitorBodyKey struct{}

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
