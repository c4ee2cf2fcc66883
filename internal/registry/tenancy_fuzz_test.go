package registry

import (
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// FuzzCompileTunnels feeds the inlets app's tunnels, as JSON from a config
// or the admin API, to CompileTunnels, then asks the compiled tenancy who
// owns hosts and ports and whether an announcement is in a scope. Nothing
// may panic; an owner is always a tunnel of the config or Unnamed; a
// tunnel owns every exact host it lists.
func FuzzCompileTunnels(f *testing.F) {
	f.Add(`{"acme":{"tokens":[{"value":"a"}],"hosts":["*.acme.example.com","shop.acme.example.com"],"tcp_ports":[2201]}}`, "x.acme.example.com", 2201)
	f.Add(`{"a":{"tokens":[{"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","expires":"2030-01-01T00:00:00Z"}],"hosts":["*"]},"b":{"tokens":[{"value":"b"}],"hosts":["*.example.com"],"max_clients":2}}`, "www.example.com", 1)
	f.Add(`{"..":{"tokens":[{"value":"a"}],"hosts":["x.com"]}}`, "", 0)
	f.Fuzz(func(t *testing.T, raw, host string, port int) {
		var tunnels map[string]*Tunnel
		if json.Unmarshal([]byte(raw), &tunnels) != nil {
			return
		}
		ten, err := CompileTunnels(tunnels)
		if err != nil {
			return
		}
		known := func(name string) bool { return name == Unnamed || ten.Scope(name) != nil }
		host = strings.ToLower(host)
		for _, owner := range []string{ten.Owner(host), ten.OwnerOfPattern(host), ten.PortOwner(Port{Num: port}), ten.PortOwner(Port{UDP: true, Num: port})} {
			if !known(owner) {
				t.Fatalf("owner %q is no tunnel of the config", owner)
			}
		}
		// Ownership is an index of tunnel.HostPattern's Covers: the owner
		// lists a pattern that covers the host, and when some tunnel's
		// pattern covers it, some tunnel owns it.
		if owner, pattern := ten.OwnerAndPattern(host); owner != Unnamed {
			if !tunnel.HostPattern(pattern).Covers(host) || !slices.Contains(ten.Scope(owner).Hosts, pattern) {
				t.Fatalf("%s is owned by %s through %q, which it does not list or which does not cover it", host, owner, pattern)
			}
		} else if tunnel.ValidateHostPattern(host) == nil && host != "*" && !strings.HasPrefix(host, "*") {
			for name, sc := range ten.tunnels {
				for _, p := range sc.Hosts {
					if tunnel.HostPattern(p).Covers(host) {
						t.Fatalf("%s is no tunnel's, yet tunnel %s's %s covers it", host, name, p)
					}
				}
			}
		}
		for name, tun := range tunnels {
			for _, h := range tun.Hosts {
				h = strings.ToLower(h)
				if !strings.Contains(h, "*") && ten.Owner(h) != name {
					t.Fatalf("tunnel %s lists %s, owned by %q", name, h, ten.Owner(h))
				}
			}
			hello := tunnel.Hello{HTTP: []tunnel.HTTPUpstream{{Host: host}}, TCP: []tunnel.TCPUpstream{{Port: port}}}
			ten.CheckAnnouncement(name, &hello)
		}
		ten.Authenticate(sha256.Sum256([]byte(host)), time.Now())
		ten.NextExpiry(time.Now())
	})
}

// FuzzTunnelCaddyfile feeds a tunnel block's body to the Caddyfile
// parser: an error or a tunnel, never a panic.
func FuzzTunnelCaddyfile(f *testing.F) {
	f.Add("token_sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\nhosts *.acme.example.com\ntcp_ports 2201 3000-3010\nmax_clients 4\non_demand_wildcards")
	f.Add("token {env.X}\ntoken_file /run/x\nmax_streams_per_client 0")
	f.Add("tcp_ports 0-70000")
	f.Add("hosts *\non_demand_wildcards\non_demand_per_hour 50")
	f.Add("on_demand_per_hour -1")
	f.Fuzz(func(t *testing.T, body string) {
		// Not NewTestDispenser: it exits the process on a lexing error,
		// which Caddy's own parser returns as an error.
		tokens, err := caddyfile.Tokenize([]byte("tunnel acme {\n"+body+"\n}"), "Caddyfile")
		if err != nil {
			return
		}
		d := caddyfile.NewDispenser(tokens)
		d.Next() // tunnel
		d.Next() // acme
		tun := new(Tunnel)
		if UnmarshalTunnel(d, tun) != nil {
			return
		}
		if len(tun.TCPPorts) > 0 && !strings.Contains(body, "tcp_ports") {
			t.Fatalf("ports from nowhere: %v", tun.TCPPorts)
		}
	})
}

// FuzzParsePortSpec checks that a port spec gives ports in 1-65535, in
// order, at most MaxTunnelPorts of them, or an error.
func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"2201", "3000-3010", "0", "65536", "1-65535", "-", "5-3", " 22", "22-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ports, err := ParsePortSpec(spec)
		if err != nil {
			return
		}
		if len(ports) == 0 || len(ports) > MaxTunnelPorts {
			t.Fatalf("%q: %d ports", spec, len(ports))
		}
		for i, p := range ports {
			if p < 1 || p > 65535 || i > 0 && p != ports[i-1]+1 {
				t.Fatalf("%q: ports %v", spec, ports)
			}
		}
	})
}
