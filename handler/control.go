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
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// upgrader accepts clients' WebSockets. Origin is not checked: clients are
// not browsers, and the bearer token is the authentication.
var upgrader = websocket.Upgrader{
	HandshakeTimeout: tunnel.HandshakeTimeout,
	WriteBufferSize:  tunnel.WriteBufferSize,
	WriteBufferPool:  tunnel.WriteBufferPool,
	CheckOrigin:      func(*http.Request) bool { return true },
}

// serveConnect authenticates a client and hands its upgraded connection to
// the registry, which runs the session on its own goroutines: it outlives
// this request and this config.
func (h *Handler) serveConnect(w http.ResponseWriter, r *http.Request) error {
	if !h.tokens.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="inlets"`)
		http.Error(w, "inlets: missing or wrong token: give the client the server's token with --token or --token-file", http.StatusUnauthorized)
		if c := h.logger.Check(zap.InfoLevel, "client refused: missing or wrong token"); c != nil {
			c.Write(zap.String("remote_addr", r.RemoteAddr))
		}
		return nil
	}
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "inlets: "+tunnel.ConnectPath+" expects a WebSocket upgrade over HTTP/1.1 from an inlets client", http.StatusBadRequest)
		return nil
	}
	ws, err := upgrader.Upgrade(hijacker{w}, r, nil)
	if err != nil {
		// The upgrader has answered the client already.
		h.logger.Warn("upgrading client connection", zap.String("remote_addr", r.RemoteAddr), zap.Error(err))
		return nil
	}
	// The server's read and write deadlines still apply to the hijacked
	// connection; the session sets its own.
	ws.NetConn().SetDeadline(time.Time{})
	go h.reg.Serve(tunnel.NewConn(ws), r.RemoteAddr, registry.Policy{AllowHost: h.allow})
	return nil
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
