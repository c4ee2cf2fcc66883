package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Tunnel and Token are the config's types, in the public package
// config: a tunnel of the inlets app, and one of its tokens.
type (
	Tunnel = config.Tunnel
	Token  = config.Token
)

// Unnamed is the name of the default tunnel, whose tokens are the inlets
// handlers' own (AddDefaultTokens): its clients serve what the handlers'
// allow_hosts and the TCP data plane's ports allow, and nothing that a
// named tunnel owns.
const Unnamed = ""

// MaxTunnelPorts bounds one tunnel's tcp_ports, and its udp_ports.
const MaxTunnelPorts = config.MaxTunnelPorts

// Tenancy is the compiled form of a config's tunnels: who a token belongs
// to and which tunnel owns a host or a port. Every token belongs to a
// tunnel: a named tunnel's to it, an inlets handler's own to the default
// tunnel (Unnamed), added as the handlers provision. It does not change
// once its config has started; the registry holds the one of the config
// that started last.
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
	// Visitors is what the tunnel asks of its visitors; nil: nothing.
	Visitors *VisitorPolicy
}

type tokenOf struct {
	tunnel  string
	expires time.Time // zero: never
	// allows is, for a token of the default tunnel, the allow_hosts of
	// each handler that holds it: its client may announce the hosts that
	// one of them allows.
	allows []HostAllow
}

// HostAllow is an inlets handler's allow_hosts: its patterns, and the
// matcher of them (nil: any host).
type HostAllow struct {
	Patterns []string
	Allow    func(host string) bool
}

// AddDefaultTokens adds an inlets handler's own tokens, by digest, to the
// default tunnel, with the handler's allow_hosts. A token of a named
// tunnel cannot be a handler's too: its clients would be the tunnel's.
// Two handlers may hold one token; its client may announce what either
// allows. Called as the config's handlers provision, before it starts.
func (t *Tenancy) AddDefaultTokens(digests [][sha256.Size]byte, allow HostAllow) error {
	for i, digest := range digests {
		tok, ok := t.byDigest[digest]
		if ok && tok.tunnel != Unnamed {
			return fmt.Errorf("token %d of this inlets handler is also tunnel %s's: its clients would be that tunnel's, not the server's; give each its own token", i+1, tok.tunnel)
		}
		tok.tunnel = Unnamed
		tok.allows = append(tok.allows, allow)
		t.byDigest[digest] = tok
	}
	if _, ok := t.tunnels[Unnamed]; !ok && len(digests) > 0 {
		t.tunnels[Unnamed] = &Scope{Name: Unnamed}
	}
	return nil
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
		visitors, err := compileVisitors(tun.Visitors)
		if err != nil {
			return nil, fail("visitors", "%v", err)
		}
		t.tunnels[name] = &Scope{
			Visitors:            visitors,
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

// Len is the number of named tunnels.
func (t *Tenancy) Len() int {
	if t == nil {
		return 0
	}
	if _, ok := t.tunnels[Unnamed]; ok {
		return len(t.tunnels) - 1
	}
	return len(t.tunnels)
}

// Scope returns the tunnel of that name, or nil: Unnamed is the default
// tunnel, there when some handler has tokens of its own.
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
