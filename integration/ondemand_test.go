package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// Names of this run: Caddy's certificate cache outlives a run of the
	// test (go test -count), and pebble's root does not.
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	acmeDomain, wildDomain := "acme-"+run+".example.com", "wild-"+run+".example.com"
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
			hosts shop.%[7]s *.%[7]s
		}
		tunnel wild {
			token %[6]s
			hosts *.%[8]s
			on_demand_wildcards
		}
	}`, httpPort, t.TempDir(), pebble.Directory, pebble.CAFile, acmeToken, labToken, acmeDomain, wildDomain)
	sites := fmt.Sprintf(":%d {\n\tinlets control\n}\nhttps://:%d {\n\ttls {\n\t\ton_demand\n\t}\n\tinlets data\n}", control, data)
	testenv.StartCaddy(t, adminPort, globals, sites)
	url := fmt.Sprintf("ws://127.0.0.1:%d", control)

	up := newUpstream(t, "acme")
	acmeCfg := testenv.HTTPClient(url, "shop."+acmeDomain, up.URL, "*."+acmeDomain, up.URL)
	acmeCfg.Token = acmeToken
	acme := testenv.Client(t, acmeCfg)
	wildCfg := testenv.HTTPClient(url, "*."+wildDomain, up.URL)
	wildCfg.Token = labToken
	testenv.Client(t, wildCfg)

	roots := pebble.IssuerRoots(t)
	dataAddr := fmt.Sprintf("127.0.0.1:%d", data)

	// The announced host: curl, trusting pebble's root only, gets the
	// upstream's answer over a certificate pebble signed.
	rootFile := pebble.IssuerRootFile(t)
	out, err := exec.Command("curl", "-sS", "--max-time", "30", "--cacert", rootFile,
		"--resolve", fmt.Sprintf("shop.%s:%d:127.0.0.1", acmeDomain, data),
		fmt.Sprintf("https://shop.%s:%d/hello", acmeDomain, data)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"upstream":"acme"`) {
		t.Fatalf("curl https://shop.%s: %v\n%s\npebble:\n%s", acmeDomain, err, out, pebble.Log())
	}
	if issuer := handshake(t, dataAddr, "shop."+acmeDomain, roots); !strings.Contains(issuer, "Pebble") {
		t.Errorf("shop.%s's certificate is issued by %q, not pebble", acmeDomain, issuer)
	}
	orders := pebble.Orders()
	if orders != 1 {
		t.Errorf("%d ACME orders for one name", orders)
	}

	// Names no client announces, a name only under acme's wildcard
	// (acme does not opt in), and the catch-all's kind: refused, with no
	// order.
	for _, name := range []string{"nobody-" + run + ".example.com", "other." + acmeDomain, "x.shop." + acmeDomain} {
		if err := tryHandshake(dataAddr, name, roots); err == nil {
			t.Errorf("%s got a certificate", name)
		}
	}
	if n := pebble.Orders(); n != orders {
		t.Errorf("refused names made %d ACME orders", n-orders)
	}

	// Under wild's wildcard, which opts in: a certificate.
	if issuer := handshake(t, dataAddr, "shop."+wildDomain, roots); !strings.Contains(issuer, "Pebble") {
		t.Errorf("shop.%s's certificate is issued by %q", wildDomain, issuer)
	}
	orders = pebble.Orders()

	// acme's client leaves: a new name of it is refused, without an order.
	acme.Stop()
	waitSessions(t, acme.ID(), 0)
	if err := tryHandshake(dataAddr, "shop2."+acmeDomain, roots); err == nil {
		t.Error("a name of a tunnel whose client left got a certificate")
	}
	if n := pebble.Orders(); n != orders {
		t.Errorf("a name of a tunnel whose client left made %d ACME orders", n-orders)
	}
}

// TestOneTenantsCertificateBurstLeavesTheOthersTheirs: a tenant whose
// visitors ask for 300 names under its wildcard gets at most its budget
// of ACME orders (on_demand_per_hour, and at most 5 a minute), the rest
// denied without asking the CA; meanwhile another tenant's first HTTPS
// request for its own name is answered within 10s; and a tunnel whose
// hosts are "*" gets no certificate for a name it announces (a bank's)
// without opting in.
func TestOneTenantsCertificateBurstLeavesTheOthersTheirs(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: apt-get install curl")
	}
	const (
		flood     = 300
		perHour   = 10
		anyToken  = "any-token-0123456789"
		warmToken = "warm-token-0123456789"
	)
	// Names of this run: Caddy's certificate cache outlives a run of the
	// test (go test -count), and pebble's root does not.
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	quietName, warmName, bankName := "app.quiet-"+run+".example.com", "warm-"+run+".example.com", "www.bank-"+run+".example.org"
	floodHosts := "*.flood-" + run + ".example.com"
	// So are the tunnels' names: the registry, with its budgets, and the
	// metrics outlive a run too.
	floodTunnel, quietTunnel, anyTunnel := "flood-"+run, "quiet-"+run, "any-"+run
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
		tunnel %s {
			token %s
			hosts %s
			on_demand_wildcards
			on_demand_per_hour %d
		}
		tunnel %s {
			token %s
			hosts %s
		}
		tunnel %s {
			token %s
			hosts *
		}
		tunnel warm-%s {
			token %s
			hosts %s
		}
	}`, httpPort, t.TempDir(), pebble.Directory, pebble.CAFile, floodTunnel, acmeToken, floodHosts, perHour, quietTunnel, labToken, quietName, anyTunnel, anyToken, run, warmToken, warmName)
	sites := fmt.Sprintf(":%d {\n\tinlets control\n}\nhttps://:%d {\n\ttls {\n\t\ton_demand\n\t}\n\tinlets data\n}", control, data)
	testenv.StartCaddy(t, adminPort, globals, sites)
	url := fmt.Sprintf("ws://127.0.0.1:%d", control)
	up := newUpstream(t, "up")
	for _, c := range []struct{ token, host string }{{acmeToken, floodHosts}, {labToken, quietName}, {anyToken, bankName}, {warmToken, warmName}} {
		cfg := testenv.HTTPClient(url, c.host, up.URL)
		cfg.Token = c.token
		testenv.Client(t, cfg)
	}
	roots := pebble.IssuerRoots(t)
	dataAddr := fmt.Sprintf("127.0.0.1:%d", data)

	// A first certificate registers the server's ACME account: certmagic
	// registers it once per order that finds none, and orders racing on
	// a new account can fail and wait a minute to retry, whoever's they
	// are (a server that has run a while has its account).
	if issuer := handshake(t, dataAddr, warmName, roots); !strings.Contains(issuer, "Pebble") {
		t.Fatalf("%s's certificate is issued by %q", warmName, issuer)
	}

	// The flood: 300 names, 20 handshakes at a time.
	names := make(chan string)
	var wg sync.WaitGroup
	var got, tried atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				tried.Add(1)
				if tryHandshake(dataAddr, name, roots) == nil {
					got.Add(1)
				}
			}
		}()
	}
	go func() {
		for i := range flood {
			names <- fmt.Sprintf("n%d%s", i, floodHosts[1:])
		}
		close(names)
	}()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := tried.Load(); n < 40 {
			return fmt.Errorf("%d flood handshakes started", n)
		}
		return nil
	})

	// The flood is under way: quiet's first request.
	start := time.Now()
	out, err := exec.Command("curl", "-sS", "--max-time", "30", "--cacert", pebble.IssuerRootFile(t),
		"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", quietName, data),
		fmt.Sprintf("https://%s:%d/hello", quietName, data)).CombinedOutput()
	took := time.Since(start)
	if err != nil || !strings.Contains(string(out), `"upstream":"up"`) {
		t.Fatalf("curl https://%s during the flood: %v\n%s", quietName, err, out)
	}
	t.Logf("during the flood, another tenant's first HTTPS request was answered in %s", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("another tenant's first HTTPS request took %s during the flood, want at most 10s", took.Round(time.Millisecond))
	}
	wg.Wait()

	// A name that only "*" gives its tunnel, which did not opt in.
	if err := tryHandshake(dataAddr, bankName, roots); err == nil {
		t.Errorf("%s, announced under tunnel any's \"*\", got a certificate", bankName)
	}

	m := adminMetrics(t)
	ordered := m.value("tls_ondemand_certificates_total", "tunnel", floodTunnel, "result", "order")
	over := m.value("tls_ondemand_certificates_total", "tunnel", floodTunnel, "result", "over_budget")
	quiet := m.value("tls_ondemand_certificates_total", "tunnel", quietTunnel, "result", "order")
	bank := m.value("tls_ondemand_certificates_total", "tunnel", anyTunnel, "result", "refused")
	orders := pebble.Orders()
	t.Logf("flood: %d names, %d handshakes succeeded, %v orders allowed, %v over budget; quiet: %v; any: %v refused; pebble saw %d orders",
		flood, got.Load(), ordered, over, quiet, bank, orders)
	if ordered > min(perHour, 5) || int(ordered)+int(over) != flood || got.Load() > int64(ordered) {
		t.Errorf("flood: %v orders allowed, %v over budget, %d handshakes succeeded; want at most %d orders, the rest over budget", ordered, over, got.Load(), min(perHour, 5))
	}
	if quiet != 1 || bank < 1 {
		t.Errorf("quiet's orders %v, want 1; any's refusals %v, want at least 1", quiet, bank)
	}
	if orders > int(ordered)+2 { // quiet's and warm's
		t.Errorf("pebble saw %d orders, more than the %v allowed", orders, ordered+2)
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
