package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The standalone client runs on small devices: it must not link Caddy,
// which the status package it prints with could easily drag in.
func TestInletsLinksNoCaddy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "github.com/caddyserver/") || strings.HasSuffix(pkg, "/internal/registry") ||
			strings.Contains(pkg, "github.com/prometheus/") {
			t.Errorf("cmd/inlets depends on %s", pkg)
		}
	}
}
