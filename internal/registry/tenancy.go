package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Tunnel and Token are the config's types, in the public package
// config: a tunnel of the inlets app, and one of its tokens.
type (
	Tunnel = config.Tunnel
	Token  = config.Token
)

// Unnamed is the tunnel name of clients that presented a handler's own
// token: they serve what the handler's allow_hosts and the TCP data
// plane's ports allow, and nothing that a named tunnel owns.
const Unnamed = ""

// MaxTunnelPorts bounds one tunnel's tcp_ports, and its udp_ports.
const MaxTunnelPorts = config.MaxTunnelPorts

// Tenancy is the compiled form of a config's tunnels: who a token belongs
// to and which tunnel owns a host or a port. It does not change once its
// app has started (SetPlanes, called before, is the one change); the
// registry holds the one of the config that started last.
type Tenancy struct {
	tunnels  map[string]*Scope
	byDigest map[[sha256.Size]byte]tokenOf
	// exact maps an exact host pattern to its tunnel; wildcard maps the
	// parent of a "*.parent" pattern; any is the tunnel of "*", if any.
	exact    map[string]string
	wildcard map[string]string
	any      string
	hasAny   bool
	ports    map[Port]string

	// planes are the control-plane handlers of the config, once it
	// starts: a session of the handlers' own tokens stays only while one
	// of them still holds its token and allows its hosts.
	planes    []Plane
	planesSet bool
}

// Scope is one tunnel as the server enforces it.
type Scope struct {
	Name                string
	Hosts               []string
	Ports               []int
	UDPPorts            []int
	MaxClients          int
	MaxStreamsPerClient int
	OnDemandWildcards   bool
	OnDemandPerHour     int
}

// Plane is what a control-plane handler admits with its own tokens: the
// digests of those tokens, and its allow_hosts (nil: any host).
type Plane struct {
	Digests [][sha256.Size]byte
	Allow   func(host string) bool
}

func (p Plane) holds(digest [sha256.Size]byte) bool {
	for _, d := range p.Digests {
		if d == digest {
			return true
		}
	}
	return false
}

type tokenOf struct {
	tunnel  string
	expires time.Time // zero: never
}

// CompileTunnels checks tunnels and compiles them. Its errors name the
// tunnel and the field at fault.
func CompileTunnels(tunnels map[string]*Tunnel) (*Tenancy, error) {
	t := &Tenancy{
		tunnels:  make(map[string]*Scope, len(tunnels)),
		byDigest: make(map[[sha256.Size]byte]tokenOf, len(tunnels)),
		exact:    map[string]string{},
		wildcard: map[string]string{},
		ports:    map[Port]string{},
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range tunnels {
			if !yield(name) {
				return
			}
		}
	})
	repl := caddy.NewReplacer()
	for _, name := range names {
		tun := tunnels[name]
		if err := ValidateTunnelName(name); err != nil {
			return nil, err
		}
		if tun == nil {
			return nil, fmt.Errorf("tunnel %s: empty: give it a token and hosts, tcp_ports or udp_ports", name)
		}
		fail := func(field, format string, args ...any) error {
			return fmt.Errorf("tunnel %s: %s: %s", name, field, fmt.Sprintf(format, args...))
		}
		if len(tun.Tokens) == 0 {
			return nil, fail("tokens", "none given: add `token_sha256 <hex>`, `token {env.VAR}` or `token_file <path>` (or create it with `caddy inlets tunnel create %s`)", name)
		}
		for i, tok := range tun.Tokens {
			digest, err := tokenDigest(tok, repl)
			if err != nil {
				return nil, fail(fmt.Sprintf("token %d", i+1), "%v", err)
			}
			if other, ok := t.byDigest[digest]; ok {
				if other.tunnel == name {
					return nil, fail(fmt.Sprintf("token %d", i+1), "given twice")
				}
				return nil, fail(fmt.Sprintf("token %d", i+1), "tunnel %s has the same token: each tunnel needs a token of its own, or its clients could act as the other's", other.tunnel)
			}
			var exp time.Time
			if tok.Expires != nil {
				exp = *tok.Expires
			}
			t.byDigest[digest] = tokenOf{tunnel: name, expires: exp}
		}
		if len(tun.Hosts) == 0 && len(tun.TCPPorts) == 0 && len(tun.UDPPorts) == 0 {
			return nil, fail("hosts", "the tunnel has no hosts, no tcp_ports and no udp_ports, so its clients could serve nothing: give it some")
		}
		for _, p := range tun.Hosts {
			p = strings.ToLower(p)
			if err := tunnel.ValidateHostPattern(p); err != nil {
				return nil, fail("hosts", "%v", err)
			}
			m, key := t.exact, p
			switch {
			case p == "*":
				if t.hasAny {
					return nil, fail("hosts", `tunnel %s has "*" too: only one tunnel may hold the catch-all`, t.any)
				}
				t.any, t.hasAny = name, true
				continue
			case strings.HasPrefix(p, "*."):
				m, key = t.wildcard, p[2:]
			}
			if other, ok := m[key]; ok {
				if other == name {
					return nil, fail("hosts", "%s is given twice", p)
				}
				return nil, fail("hosts", "tunnel %s has %s too: a pattern belongs to one tunnel (a more specific pattern in another tunnel is fine: it owns its names)", other, p)
			}
			m[key] = name
		}
		for _, list := range []struct {
			field string
			ports []int
			udp   bool
		}{{"tcp_ports", tun.TCPPorts, false}, {"udp_ports", tun.UDPPorts, true}} {
			if len(list.ports) > MaxTunnelPorts {
				return nil, fail(list.field, "%d ports; a tunnel takes at most %d", len(list.ports), MaxTunnelPorts)
			}
			for _, port := range list.ports {
				if port < 1 || port > 65535 {
					return nil, fail(list.field, "%d is not a port (1-65535)", port)
				}
				key := Port{UDP: list.udp, Num: port}
				if other, ok := t.ports[key]; ok {
					if other == name {
						return nil, fail(list.field, "%d is given twice", port)
					}
					return nil, fail(list.field, "tunnel %s has port %d too: a port belongs to one tunnel", other, port)
				}
				t.ports[key] = name
			}
		}
		if tun.MaxClients < 0 || tun.MaxStreamsPerClient < 0 {
			return nil, fail("max_clients", "limits must be positive")
		}
		if tun.OnDemandPerHour < 0 {
			return nil, fail("on_demand_per_hour", "%d: want a positive number (default %d)", tun.OnDemandPerHour, DefaultOnDemandPerHour)
		}
		t.tunnels[name] = &Scope{
			Name:                name,
			Hosts:               lower(tun.Hosts),
			Ports:               slices.Sorted(slices.Values(tun.TCPPorts)),
			UDPPorts:            slices.Sorted(slices.Values(tun.UDPPorts)),
			MaxClients:          tun.MaxClients,
			MaxStreamsPerClient: tun.MaxStreamsPerClient,
			OnDemandWildcards:   tun.OnDemandWildcards,
			OnDemandPerHour:     tun.OnDemandPerHour,
		}
	}
	return t, nil
}

// ValidateTunnelName checks that name can be a tunnel's name: see
// config.ValidateTunnelName.
func ValidateTunnelName(name string) error { return config.ValidateTunnelName(name) }

// digest is the SHA-256 of the token.
func tokenDigest(tok Token, repl *caddy.Replacer) ([sha256.Size]byte, error) {
	var zero [sha256.Size]byte
	given := 0
	for _, s := range []string{tok.SHA256, tok.Value, tok.File} {
		if s != "" {
			given++
		}
	}
	if given != 1 {
		return zero, fmt.Errorf("give exactly one of sha256, value or file")
	}
	switch {
	case tok.SHA256 != "":
		b, err := hex.DecodeString(tok.SHA256)
		if err != nil || len(b) != sha256.Size {
			// Not echoed: it may be the token itself, pasted here.
			return zero, fmt.Errorf("sha256 is not a SHA-256 digest in hex (64 characters; this has %d): if it is the token itself, put its digest here instead, from `printf %%s \"$TOKEN\" | sha256sum`", len(tok.SHA256))
		}
		return [sha256.Size]byte(b), nil
	case tok.Value != "":
		v, err := ExpandToken(repl, tok.Value)
		if err != nil {
			return zero, err
		}
		if v = strings.TrimSpace(v); v == "" {
			return zero, fmt.Errorf("the token is empty")
		}
		return sha256.Sum256([]byte(v)), nil
	default:
		data, err := os.ReadFile(tok.File)
		if err != nil {
			return zero, fmt.Errorf("reading the token file: %w", err)
		}
		v := strings.TrimSpace(string(data))
		if v == "" {
			return zero, fmt.Errorf("token file %s is empty", tok.File)
		}
		return sha256.Sum256([]byte(v)), nil
	}
}

// ExpandToken expands the placeholders of a token given by value. Its
// error repeats the token only when the token is one placeholder (such as
// {env.TOKEN}): a token that merely contains braces is a secret.
func ExpandToken(repl *caddy.Replacer, token string) (string, error) {
	v, err := repl.ReplaceOrErr(token, true, true)
	if err != nil {
		if strings.HasPrefix(token, "{") && strings.HasSuffix(token, "}") && strings.Count(token, "{") == 1 {
			return "", fmt.Errorf("%w (is the environment variable set, or the file readable?)", err)
		}
		return "", fmt.Errorf("a placeholder in the token cannot be expanded (an environment variable not set, or a file not readable?); a token that contains { or } must be given with token_file or token_sha256")
	}
	return v, nil
}

// Len is the number of tunnels.
func (t *Tenancy) Len() int {
	if t == nil {
		return 0
	}
	return len(t.tunnels)
}

// Scope returns the named tunnel, or nil.
func (t *Tenancy) Scope(name string) *Scope {
	if t == nil {
		return nil
	}
	return t.tunnels[name]
}

// Authenticate returns the tunnel whose token has the given digest, and
// whether the token is accepted now. It costs one map lookup whatever the
// number of tunnels: the digest, not the token, is what is compared, so
// the time taken tells nothing of the token.
func (t *Tenancy) Authenticate(digest [sha256.Size]byte, now time.Time) (tunnel string, ok bool) {
	if t == nil {
		return "", false
	}
	tok, found := t.byDigest[digest]
	if !found || !tok.expires.IsZero() && !now.Before(tok.expires) {
		return "", false
	}
	return tok.tunnel, true
}

// TunnelOf returns the tunnel that has a token with the given digest,
// expired or not.
func (t *Tenancy) TunnelOf(digest [sha256.Size]byte) (string, bool) {
	if t == nil {
		return "", false
	}
	tok, ok := t.byDigest[digest]
	return tok.tunnel, ok
}

// TokenAccepted reports whether a session of tunnel name that presented
// digest may stay connected at now.
func (t *Tenancy) TokenAccepted(name string, digest [sha256.Size]byte, now time.Time) bool {
	got, ok := t.Authenticate(digest, now)
	return ok && got == name
}

// NextExpiry is the earliest time a token expires after now, or zero.
func (t *Tenancy) NextExpiry(now time.Time) time.Time {
	var next time.Time
	if t == nil {
		return next
	}
	for _, tok := range t.byDigest {
		if !tok.expires.IsZero() && tok.expires.After(now) && (next.IsZero() || tok.expires.Before(next)) {
			next = tok.expires
		}
	}
	return next
}

// Owner returns the tunnel that owns a visitor's host (a name, lower
// case, no port): the one with the most specific pattern that matches
// it, or Unnamed.
func (t *Tenancy) Owner(host string) string {
	if t == nil {
		return Unnamed
	}
	if name, ok := t.exact[host]; ok {
		return name
	}
	return t.ownerUnder(host)
}

// OwnerAndPattern returns the tunnel that owns a visitor's host, as
// Owner does, and the pattern of its hosts that gives it the host: the
// host itself, a "*.parent" or "*"; "" for Unnamed.
func (t *Tenancy) OwnerAndPattern(host string) (tunnel, pattern string) {
	if t == nil {
		return Unnamed, ""
	}
	if name, ok := t.exact[host]; ok {
		return name, host
	}
	for rest := host; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok {
			break
		}
		if name, ok := t.wildcard[parent]; ok {
			return name, "*." + parent
		}
		rest = parent
	}
	if t.hasAny {
		return t.any, "*"
	}
	return Unnamed, ""
}

// ownerUnder is the owner of names under host by wildcard: the tunnel of
// the longest "*.parent" with parent a proper suffix of host, else that
// of "*".
func (t *Tenancy) ownerUnder(host string) string {
	for rest := host; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok {
			break
		}
		if name, ok := t.wildcard[parent]; ok {
			return name
		}
		rest = parent
	}
	if t.hasAny {
		return t.any
	}
	return Unnamed
}

// OwnerOfPattern returns the tunnel that owns an announced host pattern:
// for "*.x", the owner of the names under x that no more specific pattern
// takes; for "*", the tunnel holding "*".
func (t *Tenancy) OwnerOfPattern(p string) string {
	if t == nil {
		return Unnamed
	}
	switch {
	case p == "*":
		if t.hasAny {
			return t.any
		}
		return Unnamed
	case strings.HasPrefix(p, "*."):
		if name, ok := t.wildcard[p[2:]]; ok {
			return name
		}
		return t.ownerUnder(p[2:])
	}
	return t.Owner(p)
}

// HasPorts reports whether some tunnel has tcp_ports or udp_ports.
func (t *Tenancy) HasPorts() bool { return t != nil && len(t.ports) > 0 }

// PortOwner returns the tunnel that owns a TCP or UDP port, or Unnamed.
func (t *Tenancy) PortOwner(p Port) string {
	if t == nil {
		return Unnamed
	}
	if name, ok := t.ports[p]; ok {
		return name
	}
	return Unnamed
}

// CheckAnnouncement refuses what a client of tunnel name announces that
// the tunnel does not own, with the reason to give the client.
func (t *Tenancy) CheckAnnouncement(name string, hello *tunnel.Hello) error {
	sc := t.Scope(name)
	if name != Unnamed && sc == nil {
		return tunnel.Reject(tunnel.RejectTokenRefused, "tunnel %s no longer exists on this server", name)
	}
	for _, up := range hello.HTTP {
		if owner := t.OwnerOfPattern(up.Host); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectHostNotAllowed, "host %s belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Host)
			}
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "host %s is not in tunnel %s's hosts (%s): announce one of those, or ask the server's operator to add it", up.Host, name, strings.Join(sc.Hosts, " "))
		}
	}
	for _, up := range hello.TCP {
		if owner := t.PortOwner(Port{Num: up.Port}); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectPortNotAllowed, "port %d belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Port)
			}
			return tunnel.Reject(tunnel.RejectPortNotAllowed, "port %d is not in tunnel %s's tcp_ports (%s): announce one of those, or ask the server's operator to add it", up.Port, name, portsString(sc.Ports))
		}
	}
	for _, up := range hello.TLS {
		if owner := t.OwnerOfPattern(up.Name); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectHostNotAllowed, "TLS name %s belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Name)
			}
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "TLS name %s is not in tunnel %s's hosts (%s): announce one of those, or ask the server's operator to add it", up.Name, name, strings.Join(sc.Hosts, " "))
		}
	}
	for _, up := range hello.UDP {
		if owner := t.PortOwner(Port{UDP: true, Num: up.Port}); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectPortNotAllowed, "UDP port %d belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Port)
			}
			return tunnel.Reject(tunnel.RejectPortNotAllowed, "UDP port %d is not in tunnel %s's udp_ports (%s): announce one of those, or ask the server's operator to add it", up.Port, name, portsString(sc.UDPPorts))
		}
	}
	return nil
}

func lower(hosts []string) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = strings.ToLower(h)
	}
	return out
}

func portsString(ports []int) string {
	if len(ports) == 0 {
		return "none"
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = strconv.Itoa(p)
	}
	return strings.Join(parts, " ")
}

// Tenancy returns the tunnels of the config that started last; nil (no
// named tunnel) until one starts.
func (r *Registry) Tenancy() *Tenancy { return r.tenancy.Load() }

// SetTenancy makes t the server's tunnels, as the inlets app of a config
// does when it starts, and disconnects the clients it no longer admits: a
// deleted tunnel's, those whose token it dropped or that has expired, and
// those announcing what their tunnel no longer owns. It is called again
// when the next token expires.
func (r *Registry) SetTenancy(t *Tenancy) {
	r.mu.Lock()
	if old := r.tenancy.Swap(t); old != nil {
		for name := range old.tunnels {
			if t.Scope(name) == nil {
				metrics.ForgetOnDemandTunnel(name)
			}
		}
	}
	r.forgetCertificateOrders(t)
	if r.expiry != nil {
		r.expiry.Stop()
		r.expiry = nil
	}
	now := time.Now()
	if next := t.NextExpiry(now); !next.IsZero() {
		r.expiry = time.AfterFunc(next.Sub(now), func() {
			if r.Tenancy() == t {
				r.SetTenancy(t)
			}
		})
	}
	r.mu.Unlock()
	// Oldest first: a tunnel whose max_clients was lowered keeps its
	// longest-connected clients.
	kept := make(map[string]int)
	for _, s := range r.Sessions() {
		err := t.admits(s, now)
		if sc := t.Scope(s.Tunnel); err == nil && sc != nil && sc.MaxClients > 0 {
			if kept[s.Tunnel] >= sc.MaxClients {
				err = tunnel.Reject(tunnel.RejectServerFull, "tunnel %s now takes at most %d clients (its max_clients), and this one connected last", s.Tunnel, sc.MaxClients)
			} else {
				kept[s.Tunnel]++
			}
		}
		if err != nil {
			r.Logger().Info("disconnecting a client the configuration no longer admits",
				zap.String("tunnel", s.Tunnel), zap.String("client_id", s.Hello.ClientID),
				zap.String("remote_addr", s.RemoteAddr), zap.Error(err))
			var rej *tunnel.Rejection
			if errors.As(err, &rej) {
				// Each in its own goroutine: a client that does not read
				// holds its write for up to ConnectionWriteTimeout, and
				// must not hold up the config's start, nor the others.
				go s.Disconnect(rej)
			} else {
				s.Close()
			}
		}
	}
}

// SetPlanes records the control-plane handlers of the config; its app
// does so when it starts, before the tenancy is the registry's.
func (t *Tenancy) SetPlanes(planes []Plane) {
	t.planes, t.planesSet = planes, true
}

// admits returns nil if s may be connected under t at now, else the
// rejection to give it: the registry asks when it adds a session (its
// token may have been replaced during the handshake) and, for every
// connected session, when t becomes the server's tunnels.
func (t *Tenancy) admits(s *Session, now time.Time) error {
	if s.Tunnel != Unnamed {
		if t.Scope(s.Tunnel) == nil {
			return tunnel.Reject(tunnel.RejectTokenRefused, "tunnel %s no longer exists on this server", s.Tunnel)
		}
		if !t.TokenAccepted(s.Tunnel, s.tokenDigest, now) {
			return tunnel.Reject(tunnel.RejectTokenRefused, "the token of tunnel %s was replaced or has expired: get the current one from the server's operator", s.Tunnel)
		}
	} else if t.planesSet {
		held := false
		for _, p := range t.planes {
			if !p.holds(s.tokenDigest) {
				continue
			}
			held = true
			if p.Allow == nil || allowsAll(p.Allow, &s.Hello) {
				return t.CheckAnnouncement(s.Tunnel, &s.Hello)
			}
		}
		if held {
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "the server no longer allows a host this client announces (its allow_hosts changed)")
		}
		return tunnel.Reject(tunnel.RejectTokenRefused, "the server no longer takes this client's token: get the current one from its operator")
	}
	return t.CheckAnnouncement(s.Tunnel, &s.Hello)
}

func allowsAll(allow func(string) bool, hello *tunnel.Hello) bool {
	for _, up := range hello.HTTP {
		if !allow(up.Host) {
			return false
		}
	}
	for _, up := range hello.TLS {
		if !allow(up.Name) {
			return false
		}
	}
	return true
}
