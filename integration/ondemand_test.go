package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// TestOnDemandCertificatesForAnnouncedHostsOnly runs Caddy with
// on-demand TLS, `permission inlets`, and pebble, a real ACME CA, as its
// issuer: an announced host gets a certificate signed by pebble; a name
// no client announces fails its handshake without an ACME order; a name
// under an announced wildcard gets one only if its tunnel opts in; and
// once the client has left, a new name of its is refused.
func TestOnDemandCertificatesForAnnouncedHostsOnly(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: apt-get install curl")
	}
	waitNoSessions(t)
	pebble := testenv.StartPebble(t)
	control, data, httpPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	globals := fmt.Sprintf(`	http_port %d
	storage file_system %s
	acme_ca %s
	acme_ca_root %s
	on_demand_tls {
		permission inlets
	}
	inlets {
		tunnel acme {
			token %s
			hosts shop.acme.example.com *.acme.example.com
		}
		tunnel wild {
			token %s
			hosts *.wild.example.com
			on_demand_wildcards
		}
	}`, httpPort, t.TempDir(), pebble.Directory, pebble.CAFile, acmeToken, labToken)
	sites := fmt.Sprintf(":%d {\n\tinlets control\n}\nhttps://:%d {\n\ttls {\n\t\ton_demand\n\t}\n\tinlets data\n}", control, data)
	testenv.StartCaddy(t, adminPort, globals, sites)
	url := fmt.Sprintf("ws://127.0.0.1:%d", control)

	up := newUpstream(t, "acme")
	acmeCfg := testenv.HTTPClient(url, "shop.acme.example.com", up.URL, "*.acme.example.com", up.URL)
	acmeCfg.Token = acmeToken
	acme := testenv.Client(t, acmeCfg)
	wildCfg := testenv.HTTPClient(url, "*.wild.example.com", up.URL)
	wildCfg.Token = labToken
	testenv.Client(t, wildCfg)

	roots := pebble.IssuerRoots(t)
	dataAddr := fmt.Sprintf("127.0.0.1:%d", data)

	// The announced host: curl, trusting pebble's root only, gets the
	// upstream's answer over a certificate pebble signed.
	rootFile := pebble.IssuerRootFile(t)
	out, err := exec.Command("curl", "-sS", "--max-time", "30", "--cacert", rootFile,
		"--resolve", fmt.Sprintf("shop.acme.example.com:%d:127.0.0.1", data),
		fmt.Sprintf("https://shop.acme.example.com:%d/hello", data)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"upstream":"acme"`) {
		t.Fatalf("curl https://shop.acme.example.com: %v\n%s\npebble:\n%s", err, out, pebble.Log())
	}
	if issuer := handshake(t, dataAddr, "shop.acme.example.com", roots); !strings.Contains(issuer, "Pebble") {
		t.Errorf("shop.acme.example.com's certificate is issued by %q, not pebble", issuer)
	}
	orders := pebble.Orders()
	if orders != 1 {
		t.Errorf("%d ACME orders for one name", orders)
	}

	// Names no client announces, a name only under acme's wildcard
	// (acme does not opt in), and the catch-all's kind: refused, with no
	// order.
	for _, name := range []string{"nobody.example.com", "other.acme.example.com", "x.shop.acme.example.com"} {
		if err := tryHandshake(dataAddr, name, roots); err == nil {
			t.Errorf("%s got a certificate", name)
		}
	}
	if n := pebble.Orders(); n != orders {
		t.Errorf("refused names made %d ACME orders", n-orders)
	}

	// Under wild's wildcard, which opts in: a certificate.
	if issuer := handshake(t, dataAddr, "shop.wild.example.com", roots); !strings.Contains(issuer, "Pebble") {
		t.Errorf("shop.wild.example.com's certificate is issued by %q", issuer)
	}
	orders = pebble.Orders()

	// acme's client leaves: a new name of it is refused, without an order.
	acme.Stop()
	waitSessions(t, acme.ID(), 0)
	if err := tryHandshake(dataAddr, "shop2.acme.example.com", roots); err == nil {
		t.Error("a name of a tunnel whose client left got a certificate")
	}
	if n := pebble.Orders(); n != orders {
		t.Errorf("a name of a tunnel whose client left made %d ACME orders", n-orders)
	}
}

// handshake makes a TLS handshake with the server name, verifying against
// roots, and returns the leaf's issuer.
func handshake(t *testing.T, addr, name string, roots *x509.CertPool) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS handshake for %s: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Issuer.String()
}

func tryHandshake(addr, name string, roots *x509.CertPool) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err == nil {
		conn.Close()
	}
	return err
}
