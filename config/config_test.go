package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// A tunnel reads and writes the inlets app's JSON, as the admin API and
// `caddy inlets tunnel` exchange it.
func TestATunnelIsTheAppsJSON(t *testing.T) {
	raw := `{"tokens":[{"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","expires":"2030-01-01T00:00:00Z"},{"file":"/run/secrets/t"}],"hosts":["*.acme.example.com"],"tcp_ports":[2222],"udp_ports":[53],"max_clients":4,"max_streams_per_client":100,"on_demand_wildcards":true,"on_demand_per_hour":50}`
	var tun Tunnel
	if err := json.Unmarshal([]byte(raw), &tun); err != nil {
		t.Fatal(err)
	}
	if tun.Tokens[0].Expires == nil || tun.Tokens[1].File != "/run/secrets/t" || tun.OnDemandPerHour != 50 || !tun.OnDemandWildcards || tun.UDPPorts[0] != 53 {
		t.Fatalf("read %+v", tun)
	}
	out, err := json.Marshal(tun)
	if err != nil || string(out) != raw {
		t.Errorf("wrote %s, %v; want %s", out, err, raw)
	}
}

func TestATunnelNameIsAPathSegmentAndALabel(t *testing.T) {
	for _, name := range []string{"acme", "a", "lab-2", "team_a.prod", strings.Repeat("x", 63)} {
		if err := ValidateTunnelName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "Acme", "a/b", "a b", "é", "a%2fb", "..", ".", ".a", "-a", strings.Repeat("x", 64)} {
		if err := ValidateTunnelName(name); err == nil {
			t.Errorf("%q: accepted", name)
		}
	}
}
