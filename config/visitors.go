package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// Visitors is what a tunnel asks of the visitors of its hosts, ports and
// TLS names, whatever route they come by: who may visit, and how often.
// A visitor refused never reaches the tunnel's clients.
type Visitors struct {
	// The visitor addresses allowed, as CIDRs ("192.0.2.0/24") or single
	// addresses; empty: any. For HTTP the visitor's address is Caddy's
	// client IP (its trusted_proxies decide whether X-Forwarded-For is
	// believed); for TCP, UDP and TLS passthrough, the connection's.
	Allow []string `json:"allow,omitempty"`

	// The visitor addresses refused, as allow; deny wins over allow.
	Deny []string `json:"deny,omitempty"`

	// HTTP requests a second from one visitor source (an IPv4 address or
	// an IPv6 /64), with request_burst at once; past it, 429 Too Many
	// Requests with Retry-After. Default: no limit.
	RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
	// Default: the rate a second, rounded up, and at least 1.
	RequestBurst int `json:"request_burst,omitempty"`

	// New TCP and TLS connections, and new UDP flows, a second from one
	// visitor source, with connection_burst at once; past it, the
	// connection is closed (the flow's datagram dropped) before any byte
	// reaches a client. Default: no limit.
	ConnectionsPerSecond float64 `json:"connections_per_second,omitempty"`
	// Default: the rate a second, rounded up, and at least 1.
	ConnectionBurst int `json:"connection_burst,omitempty"`

	// The bytes a second the tunnel carries to its visitors (down: what
	// its clients' upstreams send) and from them (up), all its clients
	// and visitors together: HTTP, TCP, UDP and TLS. Past it, the
	// streams wait, and their windows hold the rest back. Default: no
	// limit.
	BandwidthDown int64 `json:"bandwidth_down,omitempty"`
	BandwidthUp   int64 `json:"bandwidth_up,omitempty"`

	// HTTP visitors must give a user name and password of these (Caddy's
	// basic_auth, with its password hashes): 401 otherwise.
	BasicAuth *BasicAuth `json:"basic_auth,omitempty"`

	// HTTP visitors' requests are first asked of the operator's service
	// (Caddy's forward_auth): it lets a request on with a 2xx, and
	// answers the visitor itself otherwise.
	ForwardAuth *ForwardAuth `json:"forward_auth,omitempty"`

	// Request paths that need neither: patterns as Caddy's path matcher
	// has them ("/hook/*", "/health"). Default: none.
	AuthSkip []string `json:"auth_skip,omitempty"`
}

// BasicAuth is a tunnel's HTTP basic authentication: Caddy's
// http_basic provider.
type BasicAuth struct {
	// The algorithm of the passwords' hashes, as `caddy hash-password
	// --algorithm` makes them: "bcrypt" (default) or "argon2id".
	Hash string `json:"hash,omitempty"`
	// The realm browsers show. Default: "restricted".
	Realm string `json:"realm,omitempty"`
	// At least one.
	Accounts []Account `json:"accounts"`
}

// Account is a user name and the hash of its password, from `caddy
// hash-password`.
type Account struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// ForwardAuth is a tunnel's forward authentication: Caddy's forward_auth,
// a GET of uri from upstream with the visitor's request's headers and
// X-Forwarded-Method and X-Forwarded-Uri.
type ForwardAuth struct {
	// Where the operator's service listens: host:port, or
	// http(s)://host[:port].
	Upstream string `json:"upstream"`
	// The request path (and query) to ask, "/api/verify?rd=...".
	URI string `json:"uri"`
	// Headers of the service's 2xx answer set on the visitor's request
	// on its way to the tunnel's client ("Remote-User", or "From>To");
	// a visitor's own header of such a name is always removed first.
	CopyHeaders []string `json:"copy_headers,omitempty"`
}

// MinBandwidth is the least bandwidth cap, in bytes a second.
const MinBandwidth = 1024

// MaxVisitorPrefixes bounds a tunnel's allow and deny lists, each.
const MaxVisitorPrefixes = 1024

// Validate checks v's values; its errors name the field.
func (v *Visitors) Validate() error {
	for _, list := range []struct {
		field    string
		prefixes []string
	}{{"allow", v.Allow}, {"deny", v.Deny}} {
		if len(list.prefixes) > MaxVisitorPrefixes {
			return fmt.Errorf("%s: %d entries; at most %d", list.field, len(list.prefixes), MaxVisitorPrefixes)
		}
		for _, s := range list.prefixes {
			if _, err := ParseVisitorPrefix(s); err != nil {
				return fmt.Errorf("%s: %v", list.field, err)
			}
		}
	}
	for _, r := range []struct {
		field string
		rate  float64
		burst int
	}{{"requests_per_second", v.RequestsPerSecond, v.RequestBurst}, {"connections_per_second", v.ConnectionsPerSecond, v.ConnectionBurst}} {
		if r.rate < 0 || math.IsNaN(r.rate) || math.IsInf(r.rate, 0) || r.burst < 0 {
			return fmt.Errorf("%s %v, burst %d: want 0 (no limit) or more", r.field, r.rate, r.burst)
		}
		if r.burst > 0 && r.rate == 0 {
			return fmt.Errorf("a burst without %s: give the rate too", r.field)
		}
	}
	if err := v.validateAuth(); err != nil {
		return err
	}
	for _, b := range []struct {
		field string
		bytes int64
	}{{"bandwidth_down", v.BandwidthDown}, {"bandwidth_up", v.BandwidthUp}} {
		if b.bytes != 0 && b.bytes < MinBandwidth {
			return fmt.Errorf("%s %d: want at least %d bytes a second, or nothing for no limit", b.field, b.bytes, MinBandwidth)
		}
	}
	return nil
}

// ParseBandwidth parses a bandwidth as the Caddyfile and the CLI give it,
// "10MB/s" or "512KiB/s" (the "/s" may be left out), into bytes a second.
func ParseBandwidth(s string) (int64, error) {
	n, err := humanize.ParseBytes(strings.TrimSuffix(s, "/s"))
	if err != nil || n < MinBandwidth || n > 1<<50 {
		return 0, fmt.Errorf("bandwidth %q: want bytes a second, at least 1KiB/s, such as 10MB/s or 512KiB/s", s)
	}
	return int64(n), nil
}

// Burst is the burst of a rate: the one given, or the rate a second
// rounded up, at least 1.
func Burst(rate float64, burst int) int {
	if burst > 0 {
		return burst
	}
	return int(max(1, min(math.Ceil(rate), 1<<30)))
}

// ParseVisitorPrefix parses a CIDR or a single address (a /32 or /128),
// masked: "192.0.2.7/24" is 192.0.2.0/24. An IPv4 address mapped into
// IPv6 is IPv4.
func ParseVisitorPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: want a CIDR such as 192.0.2.0/24 or 2001:db8::/32, or an address", s)
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped prefix shorter than /96", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: want a CIDR such as 192.0.2.0/24 or 2001:db8::/32, or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseRate parses a rate as the Caddyfile and the CLI give it: "10/s",
// "600/m" or "36000/h", into a rate a second.
func ParseRate(s string) (float64, error) {
	n, unit, ok := strings.Cut(s, "/")
	per := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
	v, err := strconv.ParseFloat(n, 64)
	if !ok || per == 0 || err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("rate %q: want a number per second, minute or hour, such as 10/s or 600/m", s)
	}
	return v / per, nil
}

// validateAuth checks basic_auth, forward_auth and auth_skip.
func (v *Visitors) validateAuth() error {
	if b := v.BasicAuth; b != nil {
		switch b.Hash {
		case "", "bcrypt", "argon2id":
		default:
			return fmt.Errorf("basic_auth: hash %q: want bcrypt or argon2id, as `caddy hash-password --algorithm` makes them", b.Hash)
		}
		if len(b.Accounts) == 0 {
			return fmt.Errorf("basic_auth: no account: give a user name and the hash of its password, from `caddy hash-password`")
		}
		seen := map[string]bool{}
		for _, a := range b.Accounts {
			if a.Username == "" || a.Password == "" {
				return fmt.Errorf("basic_auth: an account without a user name or a password hash")
			}
			if seen[a.Username] {
				return fmt.Errorf("basic_auth: user %q is given twice", a.Username)
			}
			seen[a.Username] = true
		}
	}
	if f := v.ForwardAuth; f != nil {
		if f.Upstream == "" || strings.ContainsAny(f.Upstream, " \t") {
			return fmt.Errorf("forward_auth: upstream %q: want host:port or http(s)://host[:port] of the service that decides", f.Upstream)
		}
		if !strings.HasPrefix(f.URI, "/") {
			return fmt.Errorf("forward_auth: uri %q: want the path to ask, such as /api/verify", f.URI)
		}
		for _, h := range f.CopyHeaders {
			from, to, _ := strings.Cut(h, ">")
			if from == "" || strings.Contains(to, ">") || strings.ContainsAny(h, " :\t") {
				return fmt.Errorf("forward_auth: copy_headers %q: want a header name, or From>To", h)
			}
		}
	}
	for _, p := range v.AuthSkip {
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "*") {
			return fmt.Errorf("auth_skip %q: want a path pattern, such as /hook/*", p)
		}
	}
	if len(v.AuthSkip) > 0 && v.BasicAuth == nil && v.ForwardAuth == nil {
		return fmt.Errorf("auth_skip without basic_auth or forward_auth: it would skip nothing")
	}
	return nil
}

// HasAuth reports whether v asks HTTP visitors to authenticate.
func (v *Visitors) HasAuth() bool { return v != nil && (v.BasicAuth != nil || v.ForwardAuth != nil) }
