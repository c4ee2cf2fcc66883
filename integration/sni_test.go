package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
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
	return sniServerWith(t, "remote_ip 127.0.0.1/32", "")
}

// sniServerWith is sniServer whose tunnels route matches also guard, and
// with more global options (an inlets block).
func sniServerWith(t *testing.T, guard, globals string) (*caddyServer, int, string) {
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
					%s
				}
				route @tunnels {
					inlets
				}
			}
			tls
		}
	}
%s
}
https://c.test:%d {
	tls internal
	respond "caddy's own site"
}
:%d {
	%s
}
`, s.admin, shared, guard, globals, shared, control, inletsBoth)
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

// clientHello is the first TLS record a Go client sends for name.
func clientHello(t *testing.T, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		defer a.Close()
		tls.Client(a, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	}()
	record := make([]byte, 5)
	if _, err := io.ReadFull(b, record); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(record[3])<<8|int(record[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(record, body...)
}

// gcHeap is a Caddy process's heap in use and goroutines after a garbage
// collection (forced through the admin endpoint's heap profile).
func gcHeap(t *testing.T, srv *caddyServer) (heap, goroutines float64) {
	t.Helper()
	if code, body := get(t, "http://"+srv.admin+"/debug/pprof/heap?gc=1", ""); code != http.StatusOK {
		t.Fatalf("heap profile: HTTP %d %.200s", code, body)
	}
	m := scrape(t, "http://"+srv.admin+"/metrics", "")
	return m.value("go_memstats_heap_inuse_bytes"), m.value("go_goroutines")
}

// silentVisitorBound is what a TLS passthrough visitor that sent its
// ClientHello and went silent may hold of Caddy's heap, as docs/limits.md's
// bounds say: its TCP connection, caddy-l4's connection and matcher
// state, a stream, and the relay's two 2 KiB read buffers.
const silentVisitorBound = 24 << 10

func TestSilentTLSVisitorsHoldLittleAndAreLetGoAfterTheHandshakeTimeout(t *testing.T) {
	const visitors = 1000
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "upstream") }))
	upstream.Config.ErrorLog = log.New(io.Discard, "", 0) // a line per visitor let go
	upstream.StartTLS()
	defer upstream.Close()
	_, upPort, _ := net.SplitHostPort(upstream.Listener.Addr().String())
	srv, shared, url := sniServer(t)
	client := inletsTCP(t, url, "sni-silent", "--upstream", "127.0.0.1", "--sni", "s.test="+upPort)
	client.WaitOutput(t, 10*time.Second, "msg=connected")
	if code, body := curlTLS(t, shared, "s.test", "127.0.0.1"); code != 0 || body != "upstream" {
		t.Fatalf("curl https://s.test through the tunnel: exit %d, %.200q", code, body)
	}
	gauge := func() float64 {
		return scrape(t, "http://"+srv.admin+"/metrics", "").value("tls_dataplane_connections_gauge", "host", "s.test")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if g := gauge(); g != 0 {
			return fmt.Errorf("%v TLS connections open before the silent visitors", g)
		}
		return nil
	})
	baseHeap, baseGoroutines := gcHeap(t, srv)

	// Each visitor sends its ClientHello, reads the start of the
	// upstream's answer, and says nothing more.
	hello := clientHello(t, "s.test")
	conns := make([]net.Conn, 0, visitors)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range visitors {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", shared))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.Write(hello)
	}
	started := time.Now()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("silent visitor %d had no answer from the upstream: %v", i, err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if g := gauge(); g != visitors {
			return fmt.Errorf("%v TLS connections open, want the %d visitors", g, visitors)
		}
		return nil
	})
	heap, goroutines := gcHeap(t, srv)
	perConn := (heap - baseHeap) / visitors
	t.Logf("%d silent visitors: Caddy's heap in use %.1f → %.1f MiB, %.1f KiB each (bound %d KiB); goroutines %.0f → %.0f",
		visitors, baseHeap/(1<<20), heap/(1<<20), perConn/1024, silentVisitorBound>>10, baseGoroutines, goroutines)
	if perConn > silentVisitorBound {
		t.Errorf("a silent TLS visitor holds %.1f KiB of Caddy's heap, want at most %d KiB", perConn/1024, silentVisitorBound>>10)
	}

	// Meanwhile a visitor that speaks is served.
	if code, body := curlTLS(t, shared, "s.test", "127.0.0.1"); code != 0 || body != "upstream" {
		t.Errorf("curl https://s.test beside the silent visitors: exit %d, %.200q", code, body)
	}

	// The handshake timeout (10s by default) lets them all go, long
	// before the idle timeout (1h): each reads the end of its connection.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(40 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("silent visitor %d: %v after %s, want the connection closed after the handshake timeout",
				i, err, time.Since(started).Round(time.Second))
		}
	}
	t.Logf("all %d silent visitors let go %s after they were answered", visitors, time.Since(started).Round(100*time.Millisecond))
	testenv.Eventually(t, 10*time.Second, func() error {
		if g := gauge(); g != 0 {
			return fmt.Errorf("%v TLS connections still open after the handshake timeout", g)
		}
		return nil
	})
}

// Two clients serving one TLS name behind layer4.handlers.inlets share
// its connections, round robin, as the TCP data plane's ports do: one
// balancer for both layer-4 paths.
func TestTwoClientsServingOneTLSNameShareItsConnections(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed (CI installs it, see .ci/run)")
	}
	const connections = 20
	one, two := tlsUpstream(t, "one.test"), tlsUpstream(t, "two.test")
	_, shared, url := sniServer(t)
	for i, up := range []int{one, two} {
		p := inletsTCP(t, url, fmt.Sprintf("ha-%d", i+1), "--upstream", "127.0.0.1", "--sni", fmt.Sprintf("ha.test=%d", up))
		p.WaitOutput(t, 10*time.Second, "msg=connected")
	}
	served := map[string]int{}
	for range connections {
		served[peerSubject(t, shared, "ha.test")]++
	}
	t.Logf("%d connections for ha.test: %v", connections, served)
	if served["CN=one.test"] != connections/2 || served["CN=two.test"] != connections/2 {
		t.Errorf("%d connections for ha.test went %v; want half to each client's upstream", connections, served)
	}
}
