package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PebbleBin is where Debian's pebble package installs the server.
const PebbleBin = "/usr/bin/pebble"

// pebbleOrderLine is what pebble 2.x logs for each request to its newOrder
// URL, before it checks the request (wfe.go logs "%s %s -> calling
// handler()" with the method and route of every request). An order it
// accepts is then logged as `Added order "ID" to the db`.
const pebbleOrderLine = "POST /order-plz -> calling handler()"

// Pebble is Let's Encrypt's test ACME server, Debian's pebble package, run
// on loopback for one test.
type Pebble struct {
	Directory string // the ACME directory URL, https://127.0.0.1:PORT/dir
	CAFile    string // PEM of the CA that signs pebble's own HTTPS listener: what Caddy's acme issuer must trust (acme_ca_root / "trusted_roots_pem_files" in JSON)

	mgmt   string       // the management interface's base URL, https://127.0.0.1:PORT
	client *http.Client // trusts CAFile
	out    *syncBuffer  // pebble's stdout and stderr
}

// StartPebble runs pebble until the test ends, and waits until its
// directory answers. Pebble validates no challenges
// (PEBBLE_VA_ALWAYS_VALID), so any name can be issued without DNS or
// reachable challenge ports. Debian's package ships no certificate for
// pebble's own HTTPS listeners, so StartPebble makes a CA and a
// certificate for 127.0.0.1 in t.TempDir(). The test is skipped if pebble
// is not installed.
func StartPebble(t testing.TB) *Pebble {
	t.Helper()
	if _, err := os.Stat(PebbleBin); err != nil {
		t.Skipf("pebble is not installed (%v): apt-get install -y pebble", err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := writeListenerCerts(t, dir)
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	t.Cleanup(client.CloseIdleConnections)

	// FreePort's ports were free a moment ago; should another process take
	// one before pebble listens, try again with new ones.
	for attempt := 1; ; attempt++ {
		p, exited := startPebble(t, dir, caFile, certFile, keyFile, client)
		if !exited {
			return p
		}
		if attempt == 3 || !strings.Contains(p.Log(), "address already in use") {
			t.Fatalf("pebble exited before its directory answered; log:\n%s", p.Log())
		}
	}
}

// startPebble writes a config with fresh ports and starts pebble with it.
// It reports whether pebble exited before its directory answered.
func startPebble(t testing.TB, dir, caFile, certFile, keyFile string, client *http.Client) (p *Pebble, exited bool) {
	t.Helper()
	acmePort, mgmtPort := FreePort(t), FreePort(t)
	config := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":             certFile,
		"privateKey":              keyFile,
		// Ports the validation authority would connect to for http-01 and
		// tls-alpn-01; unused with PEBBLE_VA_ALWAYS_VALID, but not
		// pebble's fixed defaults either.
		"httpPort":                       FreePort(t),
		"tlsPort":                        FreePort(t),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	b, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(configFile, b, 0o644); err != nil {
		t.Fatal(err)
	}

	p = &Pebble{
		Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort),
		CAFile:    caFile,
		mgmt:      fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		client:    client,
		out:       new(syncBuffer),
	}
	cmd := exec.Command(PebbleBin, "-config", configFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_ALWAYS_VALID=1", // every challenge is valid, without a connection
		"PEBBLE_VA_NOSLEEP=1",      // no random delay before validating
		"PEBBLE_WFE_NONCEREJECT=0", // no nonce is rejected as bad (default 5%)
		"PEBBLE_AUTHZREUSE=100",    // always reuse a valid authorization (default: half the time)
		"PEBBLE_CHAIN_LENGTH=1",    // leaf + one intermediate, whose root is /roots/0
		"PEBBLE_ALTERNATE_ROOTS=0", // one chain only
	)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("pebble log (%s):\n%s", p.Directory, p.Log())
		}
	})

	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		err := p.get("directory", p.Directory, nil)
		if err == nil {
			return p, false
		}
		select {
		case <-done:
			return p, true
		case <-deadline:
			t.Fatalf("pebble's directory %s did not answer after 10s: %v\nlog:\n%s", p.Directory, err, p.Log())
		case <-poll.C:
		}
	}
}

// Log returns what pebble has printed so far.
func (p *Pebble) Log() string { return p.out.String() }

// Orders returns how many new-order requests pebble has received so far,
// accepted or not, as its log tells. An on-demand certificate that Caddy
// obtains is one order; with PEBBLE_WFE_NONCEREJECT=0 no request is retried.
func (p *Pebble) Orders() int {
	return strings.Count(p.Log(), pebbleOrderLine)
}

// IssuerRoots returns the root that pebble signs issued certificates with
// (through an intermediate that Caddy serves with the leaf), from its
// management interface. Pebble makes a new root each time it starts.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	var body []byte
	if err := p.get("root", p.mgmt+"/roots/0", &body); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble's /roots/0 is no PEM certificate:\n%s", body)
	}
	return pool
}

// get GETs url from pebble, and stores the body in body if it is not nil.
func (p *Pebble) get(what, url string, body *[]byte) error {
	resp, err := p.client.Get(url)
	if err != nil {
		return fmt.Errorf("pebble's %s: %w", what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("pebble's %s: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pebble's %s %s: HTTP %d: %s", what, url, resp.StatusCode, b)
	}
	if body != nil {
		*body = b
	}
	return nil
}

// writeListenerCerts writes a CA, and a certificate it signs for 127.0.0.1
// and localhost, with the certificate's key, into dir for pebble's HTTPS
// listeners.
func writeListenerCerts(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "testenv pebble listener CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "listener-ca.pem")
	certFile = filepath.Join(dir, "listener-cert.pem")
	keyFile = filepath.Join(dir, "listener-key.pem")
	for file, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// IssuerRootFile writes the root of IssuerRoots to a PEM file in
// t.TempDir() and returns its path: curl's --cacert.
func (p *Pebble) IssuerRootFile(t testing.TB) string {
	t.Helper()
	var body []byte
	if err := p.get("root", p.mgmt+"/roots/0", &body); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
