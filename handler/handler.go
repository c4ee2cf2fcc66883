// Package handler is the http.handlers.inlets module: the control plane that
// tunnel clients connect to, and the HTTP data plane that routes visitors'
// requests by Host through those clients. The data plane is Caddy's own
// reverse_proxy, fed by this package's upstream source
// (http.reverse_proxy.upstreams.inlets) and transport
// (http.reverse_proxy.transport.inlets).
package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Planes a handler may serve.
const (
	PlaneBoth    = ""
	PlaneControl = "control"
	PlaneData    = "data"
)

// Handler serves the tunnel's control plane (clients connect to
// /connect with a bearer token; /status and /metrics answer with the same
// token) and its HTTP data plane (visitors' requests, routed by Host to the
// clients that announced it).
//
// One handler may serve both planes, or a site may serve only one: inlets-pro
// keeps clients on port 8123 and visitors on 80/443, and so can Caddy, with
// `plane: "control"` on the clients' site and `plane: "data"` on the
// visitors' sites, so that /connect, /status and /metrics never shadow an
// upstream's own paths.
type Handler struct {
	// Which plane this handler serves: "control" (only the control plane's
	// /connect, /status and /metrics; other requests go to the next
	// handler), "data" (only visitors' requests) or empty for both.
	Plane string `json:"plane,omitempty"`

	// Tokens that clients may present as `Authorization: Bearer <token>`.
	// Placeholders are expanded once, at provisioning: {env.VAR} and
	// {file./path/to/token}. Required unless plane is "data".
	Tokens []string `json:"tokens,omitempty"`

	// Files holding one token each (surrounding white space is ignored).
	TokenFiles []string `json:"token_files,omitempty"`

	// The SHA-256 of tokens, in hex (`printf %s "$TOKEN" | sha256sum`):
	// the config, and Caddy's autosave, then never holds the token.
	TokenSHA256 []string `json:"token_sha256,omitempty"`

	// Host patterns clients may announce: "app.example.com",
	// "*.example.com" (any name under example.com) or "*" (anything,
	// including the catch-all). Empty allows every host.
	AllowHosts []string `json:"allow_hosts,omitempty"`

	// When no client serves a request's Host, hand the request to the next
	// handler instead of answering 502.
	PassThru bool `json:"pass_thru,omitempty"`

	// Load balancing between clients that announce the same host, as in
	// reverse_proxy. Default: round_robin, retrying a failed dial on
	// another client for up to 5s.
	LoadBalancing *reverseproxy.LoadBalancing `json:"load_balancing,omitempty"`

	// How long upgraded connections (visitors' websockets) proxied by a
	// config survive that config's unloading, as in reverse_proxy.
	// Default: 1h, so a reload does not cut them.
	StreamCloseDelay caddy.Duration `json:"stream_close_delay,omitempty"`

	// How long a client whose upstream was unreachable when a stream was
	// opened is passed over for that upstream, when another client serves
	// it. Default: 5s.
	FailDuration caddy.Duration `json:"fail_duration,omitempty"`

	// Limits of the control plane, each refusing the next client or
	// stream with the reason.

	// The clients connected to the server at once, all control planes
	// together: a process-wide limit, better given once as the inlets
	// global option's max_clients; a handler's is applied when its config
	// starts, and all of a config's must agree. Default: 10000.
	MaxClients int `json:"max_clients,omitempty"`
	// The data streams (visitors' connections) open at once through one
	// client. Default: 10000.
	MaxStreamsPerClient int `json:"max_streams_per_client,omitempty"`
	// The hosts one client may announce, and the TCP ports. Default: 64
	// each.
	MaxHostsPerClient int `json:"max_hosts_per_client,omitempty"`
	MaxPortsPerClient int `json:"max_ports_per_client,omitempty"`

	// The largest receive window a stream grows to, in bytes. Each
	// stream's window starts at 262144 (256 KiB, yamux's) and doubles
	// each time its reader takes it all within four round trips to the
	// client, up to this; a stream whose visitor does not read keeps the
	// first. A stream limited by its window moves about half of it per
	// round trip (its reader grants more each time it has taken half):
	// 32 MiB is 335 MB/s at 50 ms, 84 MB/s at 200 ms. The windows' growth
	// is taken from max_unread. Default: 33554432 (32 MiB); from 262144
	// (256 KiB) to 67108864 (64 MiB).
	StreamWindow int `json:"stream_window,omitempty"`

	// The data clients have sent on streams that no visitor has read
	// yet, in bytes, all clients together, as a bound: 256 KiB for each
	// stream whose reader is not waiting for data, plus what the
	// streams' windows have grown (growth stops at half of it). Past three
	// quarters of it, the streams whose visitors have not read for longest
	// (at least 250ms), the visitors who stopped reading, are reset until
	// it is back under 90% of that; at the limit, at once. Below it, a slow
	// reader slows only its own stream. One limit serves the whole
	// process: better given once, as the inlets global option's
	// max_unread; a handler's is applied when its config starts, and all
	// of a config's must agree. Default: 268435456 (256 MiB).
	MaxUnread int64 `json:"max_unread,omitempty"`

	// How long a client may leave the server's data unanswered before its
	// session is ended: its visitors are then served by other clients.
	// The server pings a client silent for 40% of it. Default: 2s.
	ClientTimeout caddy.Duration `json:"client_timeout,omitempty"`

	// Failed logins (a missing or wrong token) one address may make in a
	// window before the next are answered 429 without being looked at;
	// it earns one try back every window/failures. Defaults: 10 in 1m.
	AuthFailures      int            `json:"auth_failures,omitempty"`
	AuthFailureWindow caddy.Duration `json:"auth_failure_window,omitempty"`
	// Clients of one address (one IPv6 /64) between their upgrade and
	// the server's answer, at once. Default: 16.
	MaxHandshakesPerAddress int `json:"max_handshakes_per_address,omitempty"`

	reg            *registry.Registry
	guardLimits    guardLimits
	tokens         tokenSet
	allow          func(string) bool
	proxy          *reverseproxy.Handler
	metricsHandler http.Handler
	gatherer       prometheus.Gatherer
	logger         *zap.Logger
	control        bool
	data           bool
	// tunnels is the number of the config's named tunnels.
	tunnels int
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.inlets",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads tokens and builds the data plane's reverse proxy.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	switch h.Plane {
	case PlaneBoth:
		h.control, h.data = true, true
	case PlaneControl:
		h.control = true
	case PlaneData:
		h.data = true
	default:
		return fmt.Errorf("plane %q: want %q, %q or nothing (both)", h.Plane, PlaneControl, PlaneData)
	}

	reg, err := app.FromContext(ctx)
	if err != nil {
		return err
	}
	h.reg = reg

	if err := h.checkPlaneOptions(); err != nil {
		return err
	}
	for option, limit := range map[string]int64{"max_unread": h.MaxUnread, "max_clients": int64(h.MaxClients)} {
		if limit != 0 {
			if err := app.NoteProcessLimit(ctx, option, limit); err != nil {
				return err
			}
		}
	}
	h.setDefaults()
	if h.control {
		if h.tokens, err = loadTokens(h.Tokens, h.TokenFiles, h.TokenSHA256); err != nil {
			return err
		}
		if h.allow, err = hostAllower(h.AllowHosts); err != nil {
			return err
		}
		if err := app.NoteControlPlane(ctx, h.tokens, registry.HostAllow{Patterns: h.AllowHosts, Allow: h.allow}); err != nil {
			return err
		}
		tenancy, err := app.TenancyOf(ctx)
		if err != nil {
			return err
		}
		h.tunnels = tenancy.Len()
		// The config's registry: Caddy's metrics and inlets', as the
		// admin endpoint's /metrics and the metrics directive serve them.
		h.gatherer = ctx.GetMetricsRegistry()
		h.metricsHandler = promhttp.HandlerFor(h.gatherer, promhttp.HandlerOpts{
			ErrorLog:          promLogger{h.logger},
			EnableOpenMetrics: true,
		})
	}
	if h.data {
		if err := h.provisionProxy(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Defaults of the control plane's limits.
const (
	DefaultMaxClients          = registry.DefaultMaxClients
	DefaultMaxStreamsPerClient = 10000
	DefaultMaxHostsPerClient   = 64
	DefaultMaxPortsPerClient   = 64
	DefaultClientTimeout       = tunnel.DefaultProbeAfter + tunnel.DefaultAnswerTimeout
)

// checkPlaneOptions refuses options that have no effect on the plane the
// handler serves: a token on a data plane, which takes no clients, would
// otherwise look like protection it is not.
func (h *Handler) checkPlaneOptions() error {
	set := func(fields map[string]bool) []string {
		var names []string
		for name, isSet := range fields {
			if isSet {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return names
	}
	if !h.control {
		if names := set(map[string]bool{
			"token": len(h.Tokens) > 0, "token_file": len(h.TokenFiles) > 0, "token_sha256": len(h.TokenSHA256) > 0, "allow_hosts": len(h.AllowHosts) > 0,
			"max_clients": h.MaxClients != 0, "max_streams_per_client": h.MaxStreamsPerClient != 0,
			"max_hosts_per_client": h.MaxHostsPerClient != 0, "max_ports_per_client": h.MaxPortsPerClient != 0,
			"stream_window": h.StreamWindow != 0, "max_unread": h.MaxUnread != 0, "client_timeout": h.ClientTimeout != 0,
			"auth_failures": h.AuthFailures != 0 || h.AuthFailureWindow != 0, "max_handshakes_per_address": h.MaxHandshakesPerAddress != 0,
			"fail_duration": h.FailDuration != 0,
		}); len(names) > 0 {
			return fmt.Errorf("%s: no effect in `inlets data`, which takes no clients: these options belong with the control plane (`inlets control`, or `inlets` serving both planes), where clients connect", strings.Join(names, ", "))
		}
	}
	if !h.data {
		if names := set(map[string]bool{
			"pass_thru": h.PassThru, "load_balancing (lb_*)": h.LoadBalancing != nil, "stream_close_delay": h.StreamCloseDelay != 0,
		}); len(names) > 0 {
			return fmt.Errorf("%s: no effect in `inlets control`, which serves no visitors: these options belong with the data plane (`inlets data`, or `inlets` serving both planes)", strings.Join(names, ", "))
		}
	}
	return nil
}

// setDefaults fills in the limits left unset.
func (h *Handler) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&h.MaxClients, DefaultMaxClients)
	def(&h.MaxStreamsPerClient, DefaultMaxStreamsPerClient)
	def(&h.MaxHostsPerClient, DefaultMaxHostsPerClient)
	def(&h.MaxPortsPerClient, DefaultMaxPortsPerClient)
	def(&h.StreamWindow, tunnel.DefaultMaxStreamWindow)
	def(&h.AuthFailures, DefaultAuthFailures)
	def(&h.MaxHandshakesPerAddress, DefaultHandshakesPerAddress)
	if h.MaxUnread == 0 {
		h.MaxUnread = registry.DefaultMaxUnread
	}
	if h.ClientTimeout == 0 {
		h.ClientTimeout = caddy.Duration(DefaultClientTimeout)
	}
	if h.AuthFailureWindow == 0 {
		h.AuthFailureWindow = caddy.Duration(DefaultAuthFailureWindow)
	}
	if h.FailDuration == 0 {
		h.FailDuration = caddy.Duration(registry.DefaultFailDuration)
	}
	h.guardLimits = guardLimits{failures: h.AuthFailures, window: time.Duration(h.AuthFailureWindow), handshakes: h.MaxHandshakesPerAddress}
}

// provisionProxy builds the reverse_proxy handler of the data plane.
func (h *Handler) provisionProxy(ctx caddy.Context) error {
	transport := new(Transport)
	if err := transport.Provision(ctx); err != nil {
		return fmt.Errorf("provisioning the inlets transport: %w", err)
	}
	lb := h.LoadBalancing
	if lb == nil {
		lb = new(reverseproxy.LoadBalancing)
	}
	if lb.SelectionPolicyRaw == nil && lb.SelectionPolicy == nil {
		lb.SelectionPolicy = new(reverseproxy.RoundRobinSelection)
	}
	if lb.TryDuration == 0 && lb.Retries == 0 {
		lb.TryDuration = caddy.Duration(5 * time.Second)
		lb.TryInterval = caddy.Duration(100 * time.Millisecond)
	}
	closeDelay := h.StreamCloseDelay
	if closeDelay == 0 {
		closeDelay = caddy.Duration(time.Hour)
	}
	h.proxy = &reverseproxy.Handler{
		Transport:        transport,
		DynamicUpstreams: &Upstreams{reg: h.reg},
		LoadBalancing:    lb,
		StreamCloseDelay: closeDelay,
	}
	return h.proxy.Provision(ctx)
}

// Validate checks the configuration after provisioning.
func (h *Handler) Validate() error {
	for _, l := range []struct {
		name  string
		value int
	}{
		{"max_clients", h.MaxClients}, {"max_streams_per_client", h.MaxStreamsPerClient},
		{"max_hosts_per_client", h.MaxHostsPerClient}, {"max_ports_per_client", h.MaxPortsPerClient},
		{"auth_failures", h.AuthFailures}, {"max_handshakes_per_address", h.MaxHandshakesPerAddress},
	} {
		if l.value < 0 {
			return fmt.Errorf("%s %d must be positive", l.name, l.value)
		}
	}
	if h.StreamWindow < tunnel.MinStreamWindow || h.StreamWindow > tunnel.MaxStreamWindowLimit {
		return fmt.Errorf("stream_window %d must be from %d (256 KiB) to %d (64 MiB)", h.StreamWindow, tunnel.MinStreamWindow, tunnel.MaxStreamWindowLimit)
	}
	for _, d := range []struct {
		name  string
		value caddy.Duration
	}{{"client_timeout", h.ClientTimeout}, {"auth_failure_window", h.AuthFailureWindow}, {"fail_duration", h.FailDuration}} {
		if d.value < 0 {
			return fmt.Errorf("%s %s must be positive", d.name, time.Duration(d.value))
		}
	}
	if h.MaxUnread < 1<<20 {
		return fmt.Errorf("max_unread %d must be at least 1 MiB", h.MaxUnread)
	}
	if h.control && len(h.tokens) == 0 && h.tunnels == 0 {
		return fmt.Errorf("the inlets control plane needs a token, so that only your clients can connect: " +
			"add `token {env.INLETS_TOKEN}` (or `token_file /path/to/token`) to the inlets directive, " +
			"declare tunnels with their tokens in the global `inlets` option, " +
			"or serve only the data plane with `inlets data`")
	}
	return nil
}

// Cleanup releases the data plane's reverse proxy.
func (h *Handler) Cleanup() error {
	if h.proxy == nil {
		return nil
	}
	err := h.proxy.Cleanup()
	if t, ok := h.proxy.Transport.(caddy.CleanerUpper); ok {
		if terr := t.Cleanup(); err == nil {
			err = terr
		}
	}
	return err
}

// ServeHTTP routes control-plane paths to the control plane and everything
// else to the data plane.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.control {
		switch r.URL.Path {
		case tunnel.ConnectPath, tunnel.StatusPath, tunnel.MetricsPath:
			return h.serveControl(w, r)
		}
	}
	if !h.data {
		return next.ServeHTTP(w, r)
	}
	start := time.Now()
	// The tenancy is read once: a reload may swap it meanwhile. The
	// tunnel that owns the host decides who may visit it.
	ten := h.reg.Tenancy()
	owner, routes := h.reg.LookupIn(ten, r.Host)
	var policy *registry.VisitorPolicy
	if sc := ten.Scope(owner); sc != nil {
		policy = sc.Visitors
	}
	label := metrics.NoHost
	if len(routes) > 0 {
		// Every route of a lookup has the same pattern: the one that matched.
		label = routes[0].Host()
	}
	if refused, err := h.visitorRefused(w, r, owner, policy, label, start); refused {
		return err
	}
	caddyhttp.SetVar(r.Context(), varChecked, owner)
	if auth := policy.Auth(); auth != nil {
		return h.authenticateVisitor(w, r, next, auth, owner, routes, label, start)
	}
	return h.serveTunnel(w, r, next, owner, routes, label, start)
}

// serveTunnel proxies a visitor's request to a client of its host, or
// answers that none is connected.
func (h *Handler) serveTunnel(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, owner string, routes []registry.Route, label string, start time.Time) error {
	if len(routes) == 0 {
		switch {
		case h.PassThru:
			return next.ServeHTTP(w, r)
		case owner != registry.Unnamed:
			return serveOffline(w, r, start)
		case h.allow != nil && h.allow(tunnel.HostOnly(r.Host)):
			return serveOffline(w, r, start)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintf(w, "502 Bad Gateway: no tunnel client is connected for %s\n", tunnel.HostOnly(r.Host))
		metrics.HTTPRequest(http.StatusBadGateway, metrics.NoHost, r.Method, time.Since(start))
		return nil
	}
	// The transport needs the visitor's body under reverse_proxy's
	// wrapper only for an HTTP/2 upstream (see closeAfterRead).
	if r.Body != nil && r.Body != http.NoBody && slices.ContainsFunc(routes, servesHTTP2) {
		vb := &visitorBody{ReadCloser: r.Body, endsRead: r.ProtoMajor >= 2}
		r = r.WithContext(context.WithValue(r.Context(), visitorBodyKey{}, vb))
		r.Body = vb
	}
	rec := caddyhttp.NewResponseRecorder(w, nil, nil)
	err := h.proxy.ServeHTTP(rec, r, next)
	metrics.HTTPRequest(responseStatus(rec, err), label, r.Method, time.Since(start))
	return err
}

// servesHTTP2 reports whether rt's upstream speaks HTTP/2 (h2c or h2).
func servesHTTP2(rt registry.Route) bool {
	return rt.Session.Hello.HTTP[rt.Index].HTTP2()
}

// responseStatus is the status a proxied request was answered with. When
// reverse_proxy fails before writing (no client could take the request),
// Caddy answers with the status its error carries.
func responseStatus(rec caddyhttp.ResponseRecorder, err error) int {
	if err == nil {
		return statusOr(rec, http.StatusOK)
	}
	if rec.Status() != 0 {
		return rec.Status()
	}
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode
	}
	return http.StatusInternalServerError
}

// statusOr is the status a response was given so far, or def when none
// was: net/http answers 200 to a handler that writes nothing.
func statusOr(rec caddyhttp.ResponseRecorder, def int) int {
	if s := rec.Status(); s != 0 {
		return s
	}
	return def
}

// promLogger sends the metrics handler's errors to the handler's log.
type promLogger struct{ logger *zap.Logger }

func (l promLogger) Println(v ...any) { l.logger.Sugar().Error(v...) }

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
