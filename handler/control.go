package handler

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/status"
	"github.com/caddy-inlets/caddy-inlets/status/caddystatus"
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
	rec := newStatusRecorder(w)
	code := h.answerControl(rec, r)
	metrics.ControlPlaneRequest(r.Header.Get(tunnel.ModeHeader), r.URL.Path, code)
	return nil
}

// answerControl serves a control-plane request and returns the status it
// answered with.
func (h *Handler) answerControl(w *statusRecorder, r *http.Request) int {
	if !h.tokens.authorized(r) {
		fix := "send the server's token as `Authorization: Bearer <token>`"
		if r.URL.Path == tunnel.ConnectPath {
			fix = "give the client the server's token with --token or --token-file"
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="inlets"`)
		http.Error(w, "inlets: missing or wrong token: "+fix, http.StatusUnauthorized)
		if c := h.logger.Check(zap.InfoLevel, "client refused: missing or wrong token"); c != nil {
			c.Write(zap.String("remote_addr", r.RemoteAddr), zap.String("path", r.URL.Path))
		}
		return http.StatusUnauthorized
	}
	switch r.URL.Path {
	case tunnel.ConnectPath:
		if h.serveConnect(w, r) {
			return http.StatusSwitchingProtocols
		}
	case tunnel.StatusPath:
		if allowGet(w, r) {
			status.ServeJSON(w, caddystatus.Of(h.reg))
		}
	case tunnel.MetricsPath:
		if allowGet(w, r) {
			h.metricsHandler.ServeHTTP(w, r)
		}
	}
	// Nothing written: net/http answers 200.
	return w.StatusOr(http.StatusOK)
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

// serveConnect upgrades an authenticated client's connection and hands it
// to the registry, which performs the handshake here and then runs the
// session on goroutines of its own: it outlives this request and this
// config. It reports whether the upgrade succeeded.
func (h *Handler) serveConnect(w http.ResponseWriter, r *http.Request) bool {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "inlets: "+tunnel.ConnectPath+" expects a WebSocket upgrade over HTTP/1.1 from an inlets client", http.StatusBadRequest)
		return false
	}
	ws, err := upgrader.Upgrade(hijacker{w}, r, nil)
	if err != nil {
		// The upgrader has answered the client already.
		h.logger.Warn("upgrading client connection", zap.String("remote_addr", r.RemoteAddr), zap.Error(err))
		return false
	}
	// The server's read and write deadlines still apply to the hijacked
	// connection; the session sets its own.
	ws.NetConn().SetDeadline(time.Time{})
	h.reg.Serve(tunnel.NewConn(ws, tunnel.ServerSide), r.RemoteAddr, registry.Policy{AllowHost: h.allow})
	return true
}

// hijacker gives gorilla the http.Hijacker it asks for: Caddy's response
// writer wrappers do not implement it, but unwrap to one that does.
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(h.ResponseWriter).Hijack()
}

// tokenSet holds the SHA-256 of each accepted token. Comparing fixed-size
// digests in constant time reveals neither a token's content nor its length.
type tokenSet [][sha256.Size]byte

// loadTokens expands placeholders in tokens and reads token files.
func loadTokens(tokens, files []string) (tokenSet, error) {
	repl := caddy.NewReplacer()
	var set tokenSet
	for i, t := range tokens {
		expanded, err := repl.ReplaceOrErr(t, true, true)
		if err != nil {
			return nil, fmt.Errorf("token %d: %w (is the environment variable set, or the file readable?)", i+1, err)
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
	return set, nil
}

// authorized reports whether r carries an accepted bearer token. Every
// token is compared, so the time taken does not tell which one matched.
func (ts tokenSet) authorized(r *http.Request) bool {
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || given == "" {
		return false
	}
	sum := sha256.Sum256([]byte(given))
	match := 0
	for i := range ts {
		match |= subtle.ConstantTimeCompare(sum[:], ts[i][:])
	}
	return match == 1
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
			switch {
			case p == "*" || p == host:
				return true
			case strings.HasPrefix(p, "*.") && host != "*" && strings.HasSuffix(host, p[1:]):
				return true
			}
		}
		return false
	}, nil
}
