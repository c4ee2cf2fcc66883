package handler

import (
	"context"
	"errors"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
)

// FuzzCertificateAllowed asks the on-demand permission about names a
// stranger puts in a TLS ClientHello. With no client connected, every
// name is denied with an error wrapping caddytls.ErrPermissionDenied, and
// nothing panics.
func FuzzCertificateAllowed(f *testing.F) {
	for _, name := range []string{"shop.acme.example.com", "*.example.com", "*", "", ".", "a..b", "EXAMPLE.COM.", "127.0.0.1", "[::1]", "x.*.com"} {
		f.Add(name)
	}
	reg := registry.New()
	ten, err := registry.CompileTunnels(map[string]*registry.Tunnel{
		"acme": {Tokens: []registry.Token{{Value: "a"}}, Hosts: []string{"*.acme.example.com", "*"}, OnDemandWildcards: true},
	})
	if err != nil {
		f.Fatal(err)
	}
	reg.SetTenancy(ten)
	p := &Permission{reg: reg}
	f.Fuzz(func(t *testing.T, name string) {
		err := p.CertificateAllowed(context.Background(), name)
		if !errors.Is(err, caddytls.ErrPermissionDenied) {
			t.Fatalf("%q with no client connected: %v", name, err)
		}
	})
}
