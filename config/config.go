// Package config holds the types of caddy-inlets' configuration that do
// not need Caddy to build or check: a tunnel of the inlets app and its
// tokens, as the app's JSON (apps.inlets.tunnels) and the admin API have
// them. The server compiles them (package registry); the CLI that edits
// them through the admin API, and Go programs that write configs, use
// these types and checks, without linking Caddy.
package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// MaxTunnelPorts bounds one tunnel's tcp_ports, and its udp_ports.
const MaxTunnelPorts = tunnel.MaxPortRange

// Tunnel is a tenant of the server: the clients holding one of its tokens,
// and what they may serve. Its name is its key in the inlets app's
// tunnels.
type Tunnel struct {
	// The tokens its clients present as `Authorization: Bearer <token>`.
	// At least one. No two tunnels share a token.
	Tokens []Token `json:"tokens,omitempty"`

	// The host patterns its clients may announce: "app.example.com",
	// "*.example.com" (any name under example.com, at any depth) or "*"
	// (any host, the catch-all included). Where two tunnels' patterns
	// both match a name, the most specific pattern owns it: an exact name
	// over a wildcard, a longer wildcard over a shorter one, any wildcard
	// over "*". Visitors of a name only ever reach clients of the tunnel
	// that owns it, and only that tunnel's clients may announce it. Two
	// tunnels may not list the same pattern.
	Hosts []string `json:"hosts,omitempty"`

	// The TCP ports its clients may open. The TCP data plane (the inlets
	// app's tcp, or the inlets_tcp app) must be configured; it listens on
	// these in addition to its own ports. Two tunnels may not list the
	// same port.
	TCPPorts []int `json:"tcp_ports,omitempty"`

	// The UDP ports its clients may open, as tcp_ports for UDP. Two
	// tunnels may not list the same UDP port; a TCP and a UDP port of one
	// number are two ports.
	UDPPorts []int `json:"udp_ports,omitempty"`

	// How many of its clients may be connected at once. Default: no limit
	// of its own (the control plane's max_clients still applies).
	MaxClients int `json:"max_clients,omitempty"`

	// The data streams open at once through one of its clients. Default:
	// the control plane's max_streams_per_client.
	MaxStreamsPerClient int `json:"max_streams_per_client,omitempty"`

	// Let on-demand TLS (tls.permission.inlets) get certificates for any
	// name under a wildcard its clients announce that is one of its hosts,
	// "shop.example.com" for "*.example.com", and, for a tunnel whose
	// hosts include "*", for the names its clients announce that only "*"
	// gives it. Off by default: anyone can then make the server ask its
	// CA for names (within on_demand_per_hour).
	OnDemandWildcards bool `json:"on_demand_wildcards,omitempty"`

	// The most certificates on-demand TLS (tls.permission.inlets) may
	// order for its names in an hour; at most 5 of them in any minute.
	// Names whose certificate is in storage are not counted. Default: 20.
	OnDemandPerHour int `json:"on_demand_per_hour,omitempty"`

	// What the tunnel asks of its visitors: address allow and deny lists,
	// and rates per visitor source. Default: anyone, at any rate.
	Visitors *Visitors `json:"visitors,omitempty"`
}

// Token is one token of a tunnel, given in exactly one of three ways. A
// config that holds the token itself puts it in Caddy's autosave; sha256
// keeps only its digest there.
type Token struct {
	// The SHA-256 of the token, in hex: `printf %s "$TOKEN" | sha256sum`.
	SHA256 string `json:"sha256,omitempty"`
	// The token itself; placeholders ({env.VAR}, {file./path}) are
	// expanded at provisioning.
	Value string `json:"value,omitempty"`
	// A file holding the token (surrounding white space is ignored).
	File string `json:"file,omitempty"`
	// When the token stops being accepted, and the clients that connected
	// with it are disconnected: `caddy inlets tunnel rotate` sets it on
	// the tokens it replaces. Default: never.
	Expires *time.Time `json:"expires,omitempty"`
}

// ValidateTunnelName checks that name can be a tunnel's name: a key of
// the admin API's config paths and a metric label, so short and plain.
func ValidateTunnelName(name string) error {
	alnum := func(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }
	if name == "" || len(name) > 63 || !alnum(rune(name[0])) || strings.IndexFunc(name, func(r rune) bool {
		return !alnum(r) && r != '-' && r != '_' && r != '.'
	}) >= 0 {
		// A name of dots would be a relative path in the admin API's
		// /config/apps/inlets/tunnels/<name>.
		return fmt.Errorf("tunnel name %q: use 1 to 63 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit", name)
	}
	return nil
}
