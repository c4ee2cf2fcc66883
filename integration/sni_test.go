package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// tlsUpstream is a real `openssl s_server -www` with a self-signed
// certificate of its own for name: an upstream that terminates TLS itself.
func tlsUpstream(t *testing.T, name string) int {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-nodes", "-days", "1", "-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name,
		"-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	port := testenv.FreePort(t)
	testenv.Start(t, "openssl", "s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-cert", cert, "-key", key, "-www")
	testenv.Eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	})
	return port
}

// peerSubject connects with `openssl s_client -servername name` and
// returns the subject of the certificate the server presented, or "" when
// the handshake failed before one.
func peerSubject(t *testing.T, port int, name string) string {
	t.Helper()
	cmd := exec.Command("openssl", "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port), "-servername", name)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	m := regexp.MustCompile(`(?m)^subject=(.*)$`).FindSubmatch(out)
	if m == nil {
		t.Logf("openssl s_client -servername %s saw no certificate:\n%s", name, out)
		return ""
	}
	return strings.ReplaceAll(string(m[1]), " ", "")
}

// curlTLS GETs https://name:port/ through 127.0.0.1, from the source
// address from, not checking the certificate, and returns curl's exit code
// and the body.
func curlTLS(t *testing.T, port int, name, from string) (int, string) {
	t.Helper()
	url := fmt.Sprintf("https://%s:%d/", name, port)
	cmd := exec.Command("curl", "-sk", "--max-time", "10", "--interface", from, "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", name, port), url)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

// sniServer runs the built bin/caddy with one HTTPS port shared by a
// site of its own (c.test, tls internal) and caddy-l4's listener wrapper,
// whose route passes TLS connections from 127.0.0.1 to the inlets
// handler; and a control-plane site. It returns the server, the shared
// port and the control plane's URL.
//
// It is a process, not the in-process Caddy: caddy-l4 v0.1.2's listener
// wrapper reads a connection's byte counters, for a debug line, after
// handing the connection to the HTTP server (layer4/listener.go:190),
// which the race detector reports in every test binary that lets a
// connection fall through to Caddy's own site.
func sniServer(t *testing.T) (*caddyServer, int, string) {
	t.Helper()
	shared, control := testenv.FreePort(t), testenv.FreePort(t)
	s := &caddyServer{admin: fmt.Sprintf("localhost:%d", testenv.FreePort(t)), site: fmt.Sprintf("127.0.0.1:%d", control), configDir: isolateCaddy(t)}
	caddyfile := fmt.Sprintf(`{
	admin %s
	auto_https disable_redirects
	skip_install_trust
	servers :%d {
		listener_wrappers {
			layer4 {
				@tunnels {
					tls sni *.test
					remote_ip 127.0.0.1/32
				}
				route @tunnels {
					inlets
				}
			}
			tls
		}
	}
}
https://c.test:%d {
	tls internal
	respond "caddy's own site"
}
:%d {
	%s
}
`, s.admin, shared, shared, control, inletsBoth)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(t, "run", "--config", file, "--adapter", "caddyfile")
	return s, shared, "ws://" + s.site
}

// fds counts the open file descriptors of a process.
func fds(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestTLSPassthroughByServerNameOnAPortSharedWithCaddysOwnSite(t *testing.T) {
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (CI installs it, see .ci/run)", tool)
		}
	}
	upA, upB := tlsUpstream(t, "a.test"), tlsUpstream(t, "b.test")
	srv, shared, url := sniServer(t)
	pid := srv.proc.Cmd.Process.Pid
	base := fds(t, pid)
	metricsOf := func() exposition { return scrape(t, "http://"+srv.admin+"/metrics", "") }

	a := inletsTCP(t, url, "sni-a", "--upstream", "127.0.0.1", "--sni", fmt.Sprintf("a.test=%d", upA))
	b := inletsTCP(t, url, "sni-b", "--upstream", "127.0.0.1", "--sni", fmt.Sprintf("b.test=%d", upB))
	a.WaitOutput(t, 10*time.Second, "msg=connected")
	b.WaitOutput(t, 10*time.Second, "msg=connected")

	// Each name reaches its own upstream, which presents its own
	// certificate: the ClientHello went through untouched.
	for name := range map[string]bool{"a.test": true, "b.test": true} {
		if got := peerSubject(t, shared, name); got != "CN="+name {
			t.Errorf("-servername %s on the shared port: certificate of %q, want CN=%s from its own server", name, got, name)
		}
	}
	if code, body := curlTLS(t, shared, "a.test", "127.0.0.1"); code != 0 || !strings.Contains(body, "s_server") {
		t.Errorf("curl https://a.test through the tunnel: exit %d, %.200q", code, body)
	}

	// A name no client serves falls through to Caddy's own site on the
	// same port, with Caddy's certificate.
	if code, body := curlTLS(t, shared, "c.test", "127.0.0.1"); code != 0 || body != "caddy's own site" {
		t.Errorf("c.test on the shared port: exit %d, %q; want Caddy's own site", code, body)
	}
	if got := peerSubject(t, shared, "c.test"); strings.Contains(got, "a.test") || strings.Contains(got, "b.test") {
		t.Errorf("c.test got the certificate %q of a tunnel's upstream", got)
	}

	// The remote_ip matcher guards the tunnels: from 127.0.0.2 the route
	// does not match, and Caddy, which has no certificate for a.test,
	// refuses the handshake; the upstream never sees the visitor.
	if code, body := curlTLS(t, shared, "a.test", "127.0.0.2"); code == 0 {
		t.Errorf("a visitor from 127.0.0.2 reached a.test's upstream: %.200q", body)
	}

	m := metricsOf()
	if n := m.value("tls_dataplane_connections_total", "host", "a.test"); n != 2 {
		t.Errorf("tls_dataplane_connections_total{host=a.test} = %v, want 2 (s_client and curl from 127.0.0.1)", n)
	}
	if n := m.value("tls_dataplane_connections_total", "host", "b.test"); n != 1 {
		t.Errorf("tls_dataplane_connections_total{host=b.test} = %v, want 1", n)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if g := metricsOf().value("tls_dataplane_connections_gauge", "host", "a.test"); g != 0 {
			return fmt.Errorf("tls_dataplane_connections_gauge{host=a.test} = %v after the visitors left", g)
		}
		return nil
	})

	a.Kill()
	b.Kill()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := metricsOf().value("tcp_controlplane_connected_gauge"); n != 0 {
			return fmt.Errorf("%v TCP clients still connected", n)
		}
		return nil
	})
	// With its client gone, a.test falls through to Caddy too, which has
	// no certificate for it.
	if got := peerSubject(t, shared, "a.test"); got != "" {
		t.Errorf("a.test got the certificate %q after its client left", got)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		// The metrics scrapes' kept-alive connection is the test's, not
		// a leak.
		http.DefaultClient.CloseIdleConnections()
		if n := fds(t, pid); n > base {
			return fmt.Errorf("caddy has %d file descriptors open, %d before the clients and their connections", n, base)
		}
		return nil
	})
}

func TestSNIClientIsRefusedANameTheServerDoesNotAllow(t *testing.T) {
	port := testenv.FreePort(t)
	site := fmt.Sprintf(":%d {\n\tinlets {\n\t\ttoken %s\n\t\tallow_hosts *.example.com\n\t}\n}", port, testenv.Token)
	testenv.StartCaddy(t, adminPort, "", site)
	p := inletsTCP(t, fmt.Sprintf("ws://127.0.0.1:%d", port), "sni-refused", "--upstream", "127.0.0.1", "--sni", "a.test="+strconv.Itoa(testenv.FreePort(t)))
	p.WaitOutput(t, 10*time.Second, "server rejected the tunnel: TLS name a.test is not allowed by this server, which allows *.example.com")
}
