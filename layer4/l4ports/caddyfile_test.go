package l4ports

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tt := range []struct {
		name, input string
		want        *Plane
		wantErr     string
		// loadErr is an error of a value, which loading the config
		// (Provision and Validate) finds: the Caddyfile is only parsed.
		loadErr string
	}{
		{
			name:  "everything",
			input: "tcp {\n bind 0.0.0.0\n ports 2222 8000-8100\n ports 9000\n proxy_protocol v2\n idle_timeout 30m\n lb_policy least_conn\n}",
			want: &Plane{Bind: "0.0.0.0", Ports: []string{"2222", "8000-8100", "9000"}, ProxyProtocol: "v2",
				IdleTimeout: caddy.Duration(30 * time.Minute), LBPolicy: "least_conn"},
		},
		{
			name:  "udp",
			input: "tcp {\n udp_ports 53 5000-5010\n udp_idle_timeout 1m\n udp_max_flows 4096\n udp_max_flows_per_source 16\n max_datagram_size 1500\n}",
			want: &Plane{UDPPorts: []string{"53", "5000-5010"}, UDPIdleTimeout: caddy.Duration(time.Minute), UDPMaxFlows: 4096,
				UDPMaxFlowsPerSource: 16, MaxDatagramSize: 1500},
		},
		{name: "zero flows per source", input: "tcp {\n udp_max_flows_per_source 0\n}", wantErr: `udp_max_flows_per_source "0": want a positive number`},
		{name: "ports only", input: "tcp {\n ports 2222\n}", want: &Plane{Ports: []string{"2222"}}},
		{name: "IPv6 bind", input: "tcp {\n bind [::1]\n ports 2222\n}", want: &Plane{Bind: "[::1]", Ports: []string{"2222"}}},
		{name: "empty block", input: "tcp {\n}", want: &Plane{}},
		{name: "argument", input: "tcp 2222", wantErr: "wrong argument count"},
		{name: "unknown option", input: "tcp {\n listen :2222\n}", wantErr: `unknown inlets tcp option "listen": want bind, ports, proxy_protocol, idle_timeout, lb_policy, udp_ports, udp_idle_timeout, udp_max_flows, udp_max_flows_per_source or max_datagram_size`},
		{name: "bad port", input: "tcp {\n ports 2222 99999\n}", loadErr: `"99999" is not a port (1-65535) or a range FIRST-LAST such as 8000-8100`},
		{name: "bad range", input: "tcp {\n ports 9000-8000\n}", loadErr: `"9000-8000" is not a port (1-65535) or a range FIRST-LAST such as 8000-8100`},
		{name: "no ports", input: "tcp {\n ports\n}", wantErr: "wrong argument count"},
		{name: "bind with port", input: "tcp {\n bind 0.0.0.0:2222\n ports 2222\n}", loadErr: "without a port"},
		{name: "two binds", input: "tcp {\n bind 0.0.0.0 ::\n}", wantErr: "wrong argument count"},
		{name: "proxy protocol v3", input: "tcp {\n proxy_protocol v3\n ports 2222\n}", loadErr: `proxy_protocol "v3": want v1 or v2`},
		{name: "lb policy", input: "tcp {\n lb_policy random\n ports 2222\n}", loadErr: `lb_policy "random": want round_robin or least_conn`},
		{name: "idle timeout", input: "tcp {\n idle_timeout soon\n}", wantErr: "want a positive duration"},
		{name: "zero idle timeout", input: "tcp {\n idle_timeout 0s\n}", wantErr: "want a positive duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := new(Plane)
			d := caddyfile.NewTestDispenser(tt.input)
			d.Next() // the global option's parser hands over on "tcp"
			err := got.UnmarshalCaddyfile(d)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.loadErr != "" {
				got.allowed, err = parsePorts(got.Ports)
				if err == nil {
					err = got.Validate()
				}
				if err == nil || !strings.Contains(err.Error(), tt.loadErr) {
					t.Fatalf("loading: got error %v, want one containing %q", err, tt.loadErr)
				}
				return
			}
			if g, w := string(caddyconfig.JSON(got, nil)), string(caddyconfig.JSON(tt.want, nil)); g != w {
				t.Fatalf("got %s, want %s", g, w)
			}
		})
	}
}
