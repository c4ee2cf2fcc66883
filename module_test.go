package inlets

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestEveryModuleIsRegistered pins the modules one `--with` of this
// package brings into Caddy (xcaddy.md lists them).
func TestEveryModuleIsRegistered(t *testing.T) {
	for _, id := range []string{
		"admin.api.inlets",
		"http.handlers.inlets",
		"http.reverse_proxy.transport.inlets",
		"http.reverse_proxy.upstreams.inlets",
		"inlets",
		"inlets_tcp",
	} {
		if _, err := caddy.GetModule(id); err != nil {
			t.Errorf("module %s: %v", id, err)
		}
	}
}
