package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestPebble starts pebble and checks its directory, its issuer root and
// that it has no orders yet. It runs no Caddy.
func TestPebble(t *testing.T) {
	p := StartPebble(t)

	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CAFile %s holds no PEM certificate", p.CAFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(p.Directory)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dir struct{ NewOrder string }
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dir.NewOrder, "https://127.0.0.1:") {
		t.Errorf("directory's newOrder = %q, want a URL on 127.0.0.1", dir.NewOrder)
	}

	if roots := p.IssuerRoots(t); roots.Equal(x509.NewCertPool()) {
		t.Error("IssuerRoots is empty")
	}
	if n := p.Orders(); n != 0 {
		t.Errorf("Orders() = %d before any order, want 0", n)
	}
}
