package handler

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/caddystatus"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/internal/version"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/status"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// upgrader accepts clients' WebSockets. Origin is not checked: clients are
// not browsers, and the bearer token is the authentication.
//
// Its read buffer is small: an idle client's session should cost little,
// and payloads larger than the buffer bypass it (gorilla reads them
// straight into yamux's own buffer), so only frame headers and small
// messages go through it. It has no write buffer of its own either:
// tunnel.Conn writes frames itself, so gorilla's would sit unused for the
// session's life (without a pool, gorilla keeps the hijacked connection's
// 4 KiB write buffer).
var upgrader = websocket.Upgrader{
	HandshakeTimeout: tunnel.HandshakeTimeout,
	ReadBufferSize:   512,
	WriteBufferPool:  new(sync.Pool),
	CheckOrigin:      func(*http.Request) bool { return true },
}

// serveControl answers a request for one of the control plane's paths
// (/connect, /status, /metrics), which all need the bearer token, and
// counts it in the control-plane metrics of the mode the client names in
// its X-Inlets-Mode header: the request is counted before the token is
// known to be right, so that refused ones show up too.
func (h *Handler) serveControl(w http.ResponseWriter, r *http.Request) error {
	rec := caddyhttp.NewResponseRecorder(w, nil, nil)
	code := h.answerControl(rec, r)
	metrics.ControlPlaneRequest(r.Header.Get(tunnel.ModeHeader), r.URL.Path, code)
	return nil
}

// answerControl serves a control-plane request and returns the status it
// answered with. An address that has failed to log in too often lately
// is answered 429 without its token being looked at.
func (h *Handler) answerControl(w caddyhttp.ResponseRecorder, r *http.Request) int {
	addr := addressOf(r)
	if wait := controlGuard.limited(addr, h.guardLimits); wait > 0 {
		tooMany(w, wait, "inlets: too many failed logins from your address: wait before trying again, with the right token")
		return http.StatusTooManyRequests
	}
	tunnelName, ok := h.authenticate(r)
	if !ok {
		fix := "send the server's token as `Authorization: Bearer <token>`"
		if r.URL.Path == tunnel.ConnectPath {
			fix = "give the client the server's token with --token or --token-file"
		}
		controlGuard.failed(addr, r, h.guardLimits, h.logger)
		w.Header().Set("WWW-Authenticate", `Bearer realm="inlets"`)
		http.Error(w, "inlets: missing or wrong token: "+fix, http.StatusUnauthorized)
		return http.StatusUnauthorized
	}
	switch r.URL.Path {
	case tunnel.ConnectPath:
		return h.serveConnect(w, r, addr, tunnelName)
	case tunnel.StatusPath:
		if allowGet(w, r) {
			st := caddystatus.Of(h.reg)
			if tunnelName.name != registry.Unnamed {
				st = caddystatus.OfTunnel(st, tunnelName.name)
			}
			status.ServeJSON(w, st)
		}
	case tunnel.MetricsPath:
		if allowGet(w, r) {
			if tunnelName.name != registry.Unnamed {
				h.tunnelMetrics(tunnelName.name).ServeHTTP(w, r)
			} else {
				h.metricsHandler.ServeHTTP(w, r)
			}
		}
	}
	// Nothing written: net/http answers 200.
	return statusOr(w, http.StatusOK)
}

// identity is who a request's token says it is: a named tunnel, or
// Unnamed for the default tunnel (the inlets handlers' own tokens), with
// the token's digest.
type identity struct {
	name   string
	digest [sha256.Size]byte
}

// authenticate finds the tunnel of r's bearer token: a named tunnel's, or
// the default tunnel's for the inlets handlers' own tokens (one map
// lookup of the token's digest, whatever the number of tunnels). The
// token itself is never kept.
func (h *Handler) authenticate(r *http.Request) (identity, bool) {
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || given == "" {
		return identity{}, false
	}
	id := identity{digest: sha256.Sum256([]byte(given))}
	id.name, ok = h.reg.Tenancy().Authenticate(id.digest, time.Now())
	return id, ok
}

// allowGet answers 405 to anything but GET and HEAD.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "inlets: "+r.URL.Path+" answers GET", http.StatusMethodNotAllowed)
	return false
}

// serveConnect upgrades an authenticated client's connection and performs
// the handshake of its session here; the accepted session then runs on
// goroutines of its own, which hold only the registry and the session:
// it outlives this request and this config. It returns the status the
// request was answered with.
func (h *Handler) serveConnect(w caddyhttp.ResponseRecorder, r *http.Request, addr netip.Prefix, id identity) int {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "inlets: "+tunnel.ConnectPath+" expects a WebSocket upgrade over HTTP/1.1 from an inlets client", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	done, ok := controlGuard.beginHandshake(addr, h.guardLimits)
	if !ok {
		tooMany(w, time.Second, "inlets: too many clients of your address are connecting at once: try again in a moment")
		return http.StatusTooManyRequests
	}
	defer done()
	// Hijack beneath the recorder: Caddy's wraps the hijacked connection
	// in one that counts bytes and holds on to the response, and with it
	// the request's buffers, 12 KiB or so, for the session's life.
	ws, err := upgrader.Upgrade(hijacker{w.(interface{ Unwrap() http.ResponseWriter }).Unwrap()}, r, nil)
	if err != nil {
		// The upgrader has answered the client already.
		h.logger.Warn("upgrading client connection", zap.String("remote_addr", r.RemoteAddr), zap.Error(err))
		return statusOr(w, http.StatusBadRequest)
	}
	// The server's read and write deadlines still apply to the hijacked
	// connection; the session sets its own.
	ws.NetConn().SetDeadline(time.Time{})
	h.serveSession(tunnel.NewConn(ws, tunnel.ServerSide), r.RemoteAddr, addr, id)
	return http.StatusSwitchingProtocols
}

// serveSession performs the server's half of the handshake over conn and
// admits the client, or tells it why not. It owns conn. A rejection that
// is the client's own doing (a malformed or refused hello: retrying
// cannot help) counts against its address as a failed login does, and
// is logged as sparingly: a client with a valid token cannot flood the
// log, and its address is answered 429 once it has failed too often.
func (h *Handler) serveSession(conn *tunnel.Conn, remoteAddr string, addr netip.Prefix, id identity) {
	logger := h.reg.Logger()
	sess, err := tunnel.ServerSession(conn, tunnel.Config{
		MaxStreamWindow: uint32(h.StreamWindow),
		ProbeAfter:      time.Duration(h.ClientTimeout) * 2 / 5,
		AnswerTimeout:   time.Duration(h.ClientTimeout) * 3 / 5,
		Budget:          h.reg.Budget(),
		LogOutput:       yamuxLog{h.reg},
	})
	if err != nil {
		conn.Close()
		logger.Error("starting tunnel session", zap.String("remote_addr", remoteAddr), zap.Error(err))
		return
	}
	refuse := func(ctrl *tunnel.Stream, err error) {
		var rej *tunnel.Rejection
		if ctrl != nil && errors.As(err, &rej) {
			tunnel.RejectClient(ctrl, rej)
		}
		sess.Close()
		fields := []zap.Field{zap.String("remote_addr", remoteAddr), zap.Error(err)}
		if id.name != registry.Unnamed {
			fields = append(fields, zap.String("tunnel", id.name))
		}
		if rej == nil || rej.Retry == tunnel.RetryNever {
			controlGuard.strike(addr, h.guardLimits, logger, "client rejected", fields...)
			return
		}
		logger.Warn("client rejected", fields...)
	}
	ctrl, hello, protocol, err := tunnel.ReadHello(sess)
	if err != nil {
		refuse(nil, err)
		return
	}
	if err := h.checkAnnouncement(&hello); err != nil {
		refuse(ctrl, err)
		return
	}
	limits := registry.Limits{
		Tunnel:       id.name,
		TokenDigest:  id.digest,
		MaxStreams:   h.MaxStreamsPerClient,
		FailDuration: time.Duration(h.FailDuration),
	}
	if sc := h.reg.Tenancy().Scope(id.name); sc != nil && sc.MaxStreamsPerClient > 0 {
		limits.MaxStreams = sc.MaxStreamsPerClient
	}
	s := h.reg.NewSession(sess, ctrl, hello, protocol, remoteAddr, limits)
	if err := app.Admit(h.reg, s); err != nil {
		refuse(ctrl, err)
		return
	}
	if err := s.Accept(version.Version()); err != nil {
		s.Close()
		logger.Warn("answering the client's hello", zap.String("remote_addr", remoteAddr), zap.Error(err))
		return
	}
	logger.Info("client connected",
		zap.String("remote_addr", remoteAddr),
		zap.String("tunnel", id.name),
		zap.String("client_id", hello.ClientID),
		zap.Uint64("session", s.ID),
		zap.String("mode", hello.Mode),
		zap.String("client_version", hello.Version),
		zap.Int("protocol", protocol),
		zap.Strings("upstreams", s.Upstreams()))
}

// checkAnnouncement holds a client's announcement to this handler's
// limits; what its tunnel admits (a named tunnel's hosts and ports, or
// for the default tunnel, its handlers' allow_hosts less what a named
// tunnel owns) the registry checks as the session joins.
func (h *Handler) checkAnnouncement(hello *tunnel.Hello) error {
	if n := len(hello.HTTP) + len(hello.TLS); n > h.MaxHostsPerClient {
		what := "hosts"
		if len(hello.TLS) > 0 {
			what = "hosts and TLS names"
		}
		return tunnel.Reject(tunnel.RejectTooLarge, "the client announces %d %s, and this server takes at most %d from one client (its max_hosts_per_client)", n, what, h.MaxHostsPerClient)
	}
	if n := len(hello.TCP) + len(hello.UDP); n > h.MaxPortsPerClient {
		return tunnel.Reject(tunnel.RejectTooLarge, "the client announces %d ports, and this server takes at most %d from one client (its max_ports_per_client)", n, h.MaxPortsPerClient)
	}
	return nil
}

// yamuxLog sends yamux's log lines to the registry's current logger at
// debug level: they describe peers going away, which is routine.
type yamuxLog struct{ r *registry.Registry }

func (l yamuxLog) Write(p []byte) (int, error) {
	if c := l.r.Logger().Check(zap.DebugLevel, "yamux"); c != nil {
		c.Write(zap.String("line", strings.TrimSpace(string(p))))
	}
	return len(p), nil
}

// hijacker gives gorilla the http.Hijacker it asks for: Caddy's response
// writer wrappers do not implement it, but unwrap to one that does.
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(h.ResponseWriter).Hijack()
}

// tokenSet holds the SHA-256 of each of the handler's own tokens: the
// default tunnel's, which the registry's tenancy looks up by digest, so
// that the time taken tells neither a token's content nor its length.
type tokenSet [][sha256.Size]byte

// loadTokens expands placeholders in tokens, reads token files and
// decodes digests.
func loadTokens(tokens, files, digests []string) (tokenSet, error) {
	repl := caddy.NewReplacer()
	var set tokenSet
	for i, t := range tokens {
		expanded, err := registry.ExpandToken(repl, t)
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", i+1, err)
		}
		if strings.TrimSpace(expanded) == "" {
			return nil, fmt.Errorf("token %d is empty", i+1)
		}
		set = append(set, sha256.Sum256([]byte(expanded)))
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading token file: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" {
			return nil, fmt.Errorf("token file %s is empty", path)
		}
		set = append(set, sha256.Sum256([]byte(token)))
	}
	for i, hexDigest := range digests {
		b, err := hex.DecodeString(hexDigest)
		if err != nil || len(b) != sha256.Size {
			// Not echoed: it may be the token itself, pasted here.
			return nil, fmt.Errorf("token_sha256 %d is not a SHA-256 digest in hex (64 characters; this has %d): if it is the token itself, put its digest here instead, from `printf %%s \"$TOKEN\" | sha256sum`", i+1, len(hexDigest))
		}
		set = append(set, [sha256.Size]byte(b))
	}
	return set, nil
}

// hostAllower compiles an allow_hosts list. Empty allows everything.
func hostAllower(patterns []string) (func(string) bool, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	for _, p := range patterns {
		if err := tunnel.ValidateHostPattern(p); err != nil {
			return nil, fmt.Errorf("allow_hosts: %w", err)
		}
	}
	return func(host string) bool {
		for _, p := range patterns {
			if tunnel.HostPattern(p).Covers(host) {
				return true
			}
		}
		return false
	}, nil
}
