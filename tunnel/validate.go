package tunnel

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// NegotiateProtocol returns the newest protocol version that both this
// package and the Hello's range speak, or an error for the operator.
func (h *Hello) NegotiateProtocol() (int, error) {
	lo := h.MinProtocol
	if lo == 0 {
		lo = h.Protocol
	}
	v := min(h.Protocol, ProtocolVersion)
	if v < max(lo, MinProtocolVersion) {
		if h.Protocol < MinProtocolVersion {
			return 0, fmt.Errorf("this client speaks protocol %d, and this server %d to %d: upgrade the client", h.Protocol, MinProtocolVersion, ProtocolVersion)
		}
		return 0, fmt.Errorf("this client speaks protocol %d to %d, and this server %d to %d: upgrade the server", lo, h.Protocol, MinProtocolVersion, ProtocolVersion)
	}
	return v, nil
}

// Validate checks a Hello's syntax. Its errors are meant for the operator of
// the client, who reads them as the server's reason for a rejection.
func (h *Hello) Validate() error {
	if h.ClientID == "" || len(h.ClientID) > MaxClientIDLen || strings.ContainsFunc(h.ClientID, notPrintable) {
		return fmt.Errorf("client ID %q must be 1 to %d printable characters, without spaces", TruncateReason(h.ClientID), MaxClientIDLen)
	}
	switch h.Mode {
	case ModeHTTP:
		if len(h.HTTP) == 0 || len(h.TCP)+len(h.UDP)+len(h.TLS) > 0 {
			return fmt.Errorf("an http client must announce at least one host and no TCP or UDP ports or TLS names")
		}
		seen := make(map[string]bool, len(h.HTTP))
		for _, up := range h.HTTP {
			if err := ValidateHostPattern(up.Host); err != nil {
				return err
			}
			if seen[up.Host] {
				return fmt.Errorf("host %s is announced twice", up.Host)
			}
			seen[up.Host] = true
			if _, err := ParseUpstreamURL(up.URL); err != nil {
				return fmt.Errorf("upstream for %s: %w", up.Host, err)
			}
		}
	case ModeTCP:
		if len(h.TCP)+len(h.UDP)+len(h.TLS) == 0 || len(h.HTTP) > 0 {
			return fmt.Errorf("a tcp client must announce at least one TCP or UDP port or TLS name, and no HTTP hosts")
		}
		names := make(map[string]bool, len(h.TLS))
		for _, up := range h.TLS {
			if up.Name == "*" {
				return fmt.Errorf("TLS name * would take every TLS connection: announce names, or *.name")
			}
			if err := ValidateHostPattern(up.Name); err != nil {
				return fmt.Errorf("TLS name: %w", err)
			}
			if names[up.Name] {
				return fmt.Errorf("TLS name %s is announced twice", up.Name)
			}
			names[up.Name] = true
		}
		seen := make(map[int]bool, len(h.TCP))
		for _, up := range h.TCP {
			if err := checkPort(seen, "port", up.Port); err != nil {
				return err
			}
		}
		seen = make(map[int]bool, len(h.UDP))
		for _, up := range h.UDP {
			if err := checkPort(seen, "UDP port", up.Port); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("mode %q is neither %q nor %q", h.Mode, ModeHTTP, ModeTCP)
	}
	return nil
}

func checkPort(seen map[int]bool, what string, port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("%s %d is not between 1 and 65535", what, port)
	}
	if seen[port] {
		return fmt.Errorf("%s %d is announced twice", what, port)
	}
	seen[port] = true
	return nil
}

func notPrintable(r rune) bool { return r < 0x21 || r > 0x7e }

// ValidateHostPattern accepts an exact lower-case host name
// ("app.example.com"), a one-label wildcard ("*.example.com") or the
// catch-all "*".
func ValidateHostPattern(p string) error {
	if p == "*" {
		return nil
	}
	name := strings.TrimPrefix(p, "*.")
	if name == "" || len(p) > 253 || strings.ToLower(p) != p {
		return fmt.Errorf("host %q must be a lower-case name, *.name or *", p)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || strings.ContainsFunc(label, notHostChar) {
			return fmt.Errorf("host %q must be a lower-case name, *.name or *", p)
		}
	}
	return nil
}

func notHostChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
}

// Upstream URL schemes: HTTP/1.1 in clear text or over TLS, and HTTP/2 in
// clear text with prior knowledge (h2c, no Upgrade: h2c) or over TLS (h2).
// h2c and h2 are HTTP/2's names for them (RFC 9113, section 3) and the
// ALPN identifier of the second; Caddy's reverse_proxy takes h2c:// too.
const (
	SchemeHTTP  = "http"
	SchemeHTTPS = "https"
	SchemeH2C   = "h2c"
	SchemeH2    = "h2"
)

// ParseUpstreamURL parses an HTTP upstream: http://, https://, h2c:// or
// h2://, a host, and, for the first two, an optional path prefix; no query
// or fragment. An HTTP/2 upstream is relayed byte for byte, its streams
// multiplexed on one connection, so it has no prefix to rewrite paths
// onto.
func ParseUpstreamURL(raw string) (*url.URL, error) {
	scheme, _, _ := strings.Cut(raw, "://")
	shown := redactUserinfo(raw)
	switch scheme {
	case SchemeHTTP, SchemeHTTPS, SchemeH2C, SchemeH2:
	default:
		return nil, fmt.Errorf("upstream URL %q must start with http://, https://, h2c:// (HTTP/2 without TLS, such as a gRPC server's) or h2:// (HTTP/2 over TLS)", shown)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream URL %q: %w", shown, errors.Unwrap(err))
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("upstream URL %q must be scheme://host[:port][/path prefix], without credentials, query or fragment", shown)
	}
	if (scheme == SchemeH2C || scheme == SchemeH2) && strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("upstream URL %q: an HTTP/2 upstream cannot have a path prefix: write %s://%s", shown, scheme, u.Host)
	}
	return u, nil
}

// redactUserinfo hides what is between a URL's "://" and its host's "@",
// where credentials are written, from a message that shows the URL.
func redactUserinfo(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority, path, _ := strings.Cut(rest, "/")
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return raw
	}
	out := scheme + "://xxxxx@" + authority[at+1:]
	if len(rest) > len(authority) {
		out += "/" + path
	}
	return out
}

// HTTP2 reports whether the upstream speaks HTTP/2 (h2c:// or h2://): the
// server then speaks HTTP/2 with prior knowledge on the host's streams,
// and the client relays them to the upstream, over TLS for h2://.
func (up HTTPUpstream) HTTP2() bool {
	return strings.HasPrefix(up.URL, SchemeH2C+"://") || strings.HasPrefix(up.URL, SchemeH2+"://")
}

// HostOnly lower-cases a request's Host and strips its port.
func HostOnly(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(strings.TrimRight(host, "."))
}
