package l4ports

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestValidateNamesTheFix covers what JSON configs can get wrong that the
// Caddyfile parser catches earlier.
func TestValidateNamesTheFix(t *testing.T) {
	for _, tt := range []struct {
		name    string
		app     *Plane
		wantErr string
	}{
		{name: "fine", app: &Plane{Ports: []string{"2222"}}},
		{name: "everything", app: &Plane{Bind: "::", Ports: []string{"2222", "8000-8100"}, ProxyProtocol: "v1", IdleTimeout: caddy.Duration(time.Minute), LBPolicy: "round_robin"}},
		{name: "host name bind", app: &Plane{Bind: "localhost", Ports: []string{"2222"}}},
		// No ports of its own: it serves tunnels' tcp_ports, and says so
		// at start when there are none.
		{name: "no ports", app: &Plane{}},
		{name: "bind with port", app: &Plane{Bind: "0.0.0.0:22", Ports: []string{"2222"}}, wantErr: "without a port"},
		{name: "bind with network", app: &Plane{Bind: "tcp4/0.0.0.0", Ports: []string{"2222"}}, wantErr: "want an IP address or a host name"},
		{name: "proxy protocol", app: &Plane{Ports: []string{"2222"}, ProxyProtocol: "2"}, wantErr: `proxy_protocol "2": want v1 or v2`},
		{name: "negative idle", app: &Plane{Ports: []string{"2222"}, IdleTimeout: caddy.Duration(-time.Second)}, wantErr: "must be positive"},
		{name: "lb policy", app: &Plane{Ports: []string{"2222"}, LBPolicy: "ip_hash"}, wantErr: `lb_policy "ip_hash"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.app
			var err error
			if a.allowed, err = parsePorts(a.Ports); err != nil {
				t.Fatal(err)
			}
			err = a.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
