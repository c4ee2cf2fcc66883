package handler

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/certmagic"
)

// A name whose certificate certmagic has in storage, from any issuer, is
// found there: loading it costs its tunnel no order of its budget.
func TestAStoredCertificateIsFoundUnderAnyIssuer(t *testing.T) {
	dir := t.TempDir()
	p := &Permission{storage: &certmagic.FileStorage{Path: dir}}
	ctx := context.Background()
	if p.stored(ctx, "shop.acme.example.com") {
		t.Fatal("found a certificate in empty storage")
	}
	for _, issuer := range []string{"acme-v02.example-ca.org-directory", "127.0.0.1-14000-dir"} {
		if err := os.MkdirAll(filepath.Join(dir, "certificates", issuer), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	key := certmagic.StorageKeys.SiteCert("127.0.0.1-14000-dir", "shop.acme.example.com")
	if err := p.storage.Store(ctx, key, []byte("-----BEGIN CERTIFICATE-----")); err != nil {
		t.Fatal(err)
	}
	if !p.stored(ctx, "shop.acme.example.com") {
		t.Errorf("the certificate at %s is not found", key)
	}
	if p.stored(ctx, "other.acme.example.com") {
		t.Error("another name's certificate is found")
	}
}
