package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// fleetServer is one server of a fleet: the built bin/caddy with a site
// serving both planes, restarted on the same ports.
type fleetServer struct {
	*caddyServer
	file string
}

func startFleetServer(t *testing.T) *fleetServer {
	t.Helper()
	s := &fleetServer{caddyServer: &caddyServer{
		admin: fmt.Sprintf("localhost:%d", testenv.FreePort(t)),
		site:  fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}}
	caddyfile := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tgrace_period 5s\n}\n:%s {\n\tbind 127.0.0.1\n\t%s\n}\n",
		s.admin, strings.TrimPrefix(s.site, "127.0.0.1:"), inletsBoth)
	s.file = filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(s.file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	return s
}

func (s *fleetServer) start(t *testing.T) {
	t.Helper()
	s.run(t, "run", "--config", s.file, "--adapter", "caddyfile")
}

func (s *fleetServer) url() string { return "ws://" + s.site }

// get sends GET / for app.example.com through the server.
func (s *fleetServer) get(hc *http.Client) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.site+"/", nil)
	req.Host = "app.example.com"
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

// Three Caddy processes, one client process with a session to each:
// every server lists it and serves through it; one killed with SIGKILL
// and one restarted gracefully cost the third's visitors nothing, and the
// restarted one has the client back within 2 s of its admin endpoint
// answering.
func TestOneClientServesAFleetOfThreeServersThroughKillsAndRestarts(t *testing.T) {
	isolateCaddy(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the private network")
	}))
	defer up.Close()
	a, b, c := startFleetServer(t), startFleetServer(t), startFleetServer(t)
	servers := []*fleetServer{a, b, c}
	client := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--id", "fleet-client", "--token", testenv.Token,
		"--url", a.url(), "--url", b.url()+","+c.url(), "--upstream", "app.example.com="+up.URL)

	// `inlets status` over the three says the client is on each.
	statusArgs := []string{"status", "--token", testenv.Token, "--url", a.url(), "--url", b.url(), "--url", c.url()}
	allConnected := func() error {
		code, stdout, stderr := runBinary(t, "inlets", statusArgs...)
		if code != 0 || !strings.Contains(stdout, "Every client (1) is connected to all 3 servers.") || strings.Count(stdout, "fleet-client") != 3 {
			return fmt.Errorf("inlets status: exit %d\n%s%s", code, stdout, stderr)
		}
		return nil
	}
	testenv.Eventually(t, 20*time.Second, allConnected)
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, s := range servers {
		if body, err := s.get(hc); err != nil || body != "hello from the private network" {
			t.Fatalf("through %s: %q, %v", s.site, body, err)
		}
	}

	// Visitors spread over the three servers, all along: those of c, the
	// server that stays up, may not fail.
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range servers {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, err := s.get(hc)
					if s != c {
						if err != nil {
							// Pacing, not synchronisation: a server that is
							// down refuses at once.
							time.Sleep(10 * time.Millisecond)
						}
						continue
					}
					sent.Add(1)
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			}()
		}
	}

	// a dies without a word.
	a.proc.Cmd.Process.Kill()
	a.proc.Cmd.Wait()
	aKilled := time.Now()
	client.WaitOutput(t, 10*time.Second, fmt.Sprintf(`msg="tunnel down; reconnecting" server=%s/connect error="session ended`, a.url()))

	// b stops gracefully (SIGTERM) and starts again: it tells the client,
	// which comes back to it promptly.
	b.proc.Cmd.Process.Signal(syscall.SIGTERM)
	if err := b.proc.Cmd.Wait(); err != nil {
		t.Logf("b exited: %v", err)
	}
	client.WaitOutput(t, 10*time.Second, fmt.Sprintf(`msg="server is shutting down; reconnecting to it promptly, the other servers keep serving" server=%s/connect`, b.url()))
	b.start(t)
	adminUp := time.Now()
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := b.get(hc)
		return err
	})
	if took := time.Since(adminUp); took > 2*time.Second {
		t.Errorf("the restarted server served through the client %s after its admin endpoint answered, want at most 2s", took.Round(time.Millisecond))
	} else {
		t.Logf("the restarted server served again %s after its admin endpoint answered", took.Round(time.Millisecond))
	}

	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests to the surviving server failed while the others went down; first: %v", n, sent.Load(), firstErr.Load())
	}
	t.Logf("%d requests to the surviving server, none failed", sent.Load())

	// a comes back too, after an outage of at least 10s (long enough for
	// a lone server's backoff to grow to 8s): the client is back within
	// 5s of its listening, and the fleet is whole again.
	if down := time.Since(aKilled); down < 10*time.Second {
		time.Sleep(10*time.Second - down) // the outage's length, not synchronisation
	}
	a.start(t)
	aUp := time.Now()
	testenv.Eventually(t, 40*time.Second, allConnected)
	if took := time.Since(aUp); took > 5*time.Second {
		t.Errorf("after a 10s outage the client was back on the restarted server %s after its admin endpoint answered, want at most 5s", took.Round(time.Millisecond))
	} else {
		t.Logf("after a 10s outage the client was back on the restarted server %s after its admin endpoint answered", took.Round(time.Millisecond))
	}
}

// inlets status over servers one of which misses the client says so,
// and exits 1.
func TestFleetStatusSaysWhichServerMissesWhichClient(t *testing.T) {
	isolateCaddy(t)
	a, b := startFleetServer(t), startFleetServer(t)
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--id", "only-on-a", "--token", testenv.Token,
		"--url", a.url(), "--upstream", "app.example.com=http://127.0.0.1:1")
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	code, stdout, _ := runBinary(t, "inlets", "status", "--token", testenv.Token, "--url", a.url()+","+b.url())
	if code != 1 || !strings.Contains(stdout, "Missing: only-on-a is not connected to "+b.url()) || !strings.Contains(stdout, "== "+a.url()+" (instance ") {
		t.Fatalf("inlets status: exit %d\n%s", code, stdout)
	}
}

// A server that advertises a peer gives its running clients a session to
// it; one that stops advertising it takes that session away. The peer is
// added by a reload of the first server's config, with no restart of
// anything.
func TestAdvertisedPeersGetASessionFromRunningClients(t *testing.T) {
	isolateCaddy(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "peer-served") }))
	defer up.Close()
	a, b := startFleetServer(t), startFleetServer(t)
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--id", "peer-client", "--token", testenv.Token,
		"--url", a.url(), "--upstream", "app.example.com="+up.URL)
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	hc := &http.Client{Timeout: 10 * time.Second}
	if _, err := b.get(hc); err == nil {
		t.Fatal("b served before anyone advertised it")
	}

	reloadWithPeers := func(peers string) {
		t.Helper()
		body, err := os.ReadFile(a.file)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(body), "\tgrace_period 5s\n", "\tgrace_period 5s\n"+peers, 1)
		file := filepath.Join(t.TempDir(), "Caddyfile")
		os.WriteFile(file, []byte(cfg), 0o600)
		if code, stdout, stderr := runBinary(t, "caddy", "reload", "--config", file, "--adapter", "caddyfile", "--address", a.admin); code != 0 {
			t.Fatalf("caddy reload: exit %d\n%s%s", code, stdout, stderr)
		}
	}
	reloadWithPeers("\tinlets {\n\t\tpeers " + b.url() + "\n\t}\n")
	p.WaitOutput(t, 10*time.Second, `msg="server advertises the fleet's other servers"`)
	testenv.Eventually(t, 10*time.Second, func() error {
		body, err := b.get(hc)
		if err == nil && body != "peer-served" {
			err = fmt.Errorf("b answered %q", body)
		}
		return err
	})

	// No longer advertised: the session to b ends, and a keeps serving.
	reloadWithPeers("")
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, err := b.get(hc); err == nil {
			return fmt.Errorf("b still serves through the client")
		}
		return nil
	})
	if body, err := a.get(hc); err != nil || body != "peer-served" {
		t.Fatalf("a after the peers changed: %q, %v", body, err)
	}
}

// reloadWithGlobals reloads s's config with globals added to its global
// options, as `caddy reload` does.
func (s *fleetServer) reloadWithGlobals(t *testing.T, globals string) {
	t.Helper()
	body, err := os.ReadFile(s.file)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(body), "\tgrace_period 5s\n", "\tgrace_period 5s\n"+globals, 1)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runBinary(t, "caddy", "reload", "--config", file, "--adapter", "caddyfile", "--address", s.admin); code != 0 {
		t.Fatalf("caddy reload: exit %d\n%s%s", code, stdout, stderr)
	}
}

// controlPlaneRequests is how many requests s's control plane has had,
// with a token or not, as its admin endpoint's metrics say.
func (s *fleetServer) controlPlaneRequests(t *testing.T) float64 {
	t.Helper()
	var n float64
	for _, name := range []string{"http_controlplane_requests_total", "tcp_controlplane_requests_total"} {
		if f := scrape(t, "http://"+s.admin+"/metrics", "")[name]; f != nil {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// Real servers advertise peers to a real client: a's peer b, on a's own
// address, gets a session; a's peer on another host name (localhost, for
// a server given as 127.0.0.1) and b's own peer c get none, and c never
// sees the token; the client says why, once each.
func TestAClientTakesOnlyThePeersItsOperatorPointedItTo(t *testing.T) {
	isolateCaddy(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "peer-served") }))
	defer up.Close()
	a, b, c := startFleetServer(t), startFleetServer(t), startFleetServer(t)
	cPort := strings.TrimPrefix(c.site, "127.0.0.1:")
	b.reloadWithGlobals(t, "\tinlets {\n\t\tpeers "+c.url()+"\n\t}\n")
	a.reloadWithGlobals(t, "\tinlets {\n\t\tpeers "+b.url()+" ws://localhost:"+cPort+"\n\t}\n")

	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--id", "peer-client", "--token", testenv.Token,
		"--url", a.url(), "--upstream", "app.example.com="+up.URL)
	hc := &http.Client{Timeout: 10 * time.Second}
	testenv.Eventually(t, 10*time.Second, func() error {
		body, err := b.get(hc)
		if err == nil && body != "peer-served" {
			err = fmt.Errorf("b answered %q", body)
		}
		return err
	})
	p.WaitOutput(t, 10*time.Second, `msg="server advertised a peer this client does not trust with its token; ignored" peer=ws://localhost:`+cPort+` reason="localhost is not under 127.0.0.1's domain: allow it with --peer localhost"`)
	p.WaitOutput(t, 10*time.Second, `msg="a peer server advertised peers of its own; only the servers given with --url may: ignored" server=`+b.url()+`/connect peers=1`)
	if n := c.controlPlaneRequests(t); n != 0 {
		t.Errorf("c, advertised only by a peer and under another host name, had %v control-plane requests, want none", n)
	}
	if _, err := c.get(hc); err == nil {
		t.Error("c serves through the client")
	}
	for _, line := range []string{"does not trust with its token", "peers of its own"} {
		if n := strings.Count(p.Output(), line); n != 1 {
			t.Errorf("the client said %q %d times, want once", line, n)
		}
	}
}

// Two servers sharing one storage folder and pebble as their ACME CA: a
// name the client announces is ordered once for the fleet, and both
// servers present the same certificate.
func TestAFleetSharingStorageOrdersACertificateOnceAndServesItEverywhere(t *testing.T) {
	isolateCaddy(t)
	pebble := testenv.StartPebble(t)
	shared := t.TempDir()
	type node struct {
		srv  *fleetServer
		data string
	}
	var nodes []node
	for range 2 {
		s := &fleetServer{caddyServer: &caddyServer{
			admin: fmt.Sprintf("localhost:%d", testenv.FreePort(t)),
			site:  fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		}}
		data := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	http_port %d
	storage file_system %s
	acme_ca %s
	acme_ca_root %s
	on_demand_tls {
		permission inlets
	}
}
:%s {
	bind 127.0.0.1
	%s
}
https://:%s {
	bind 127.0.0.1
	tls {
		on_demand
	}
	inlets data
}
`, s.admin, testenv.FreePort(t), shared, pebble.Directory, pebble.CAFile,
			strings.TrimPrefix(s.site, "127.0.0.1:"), inletsBoth, strings.TrimPrefix(data, "127.0.0.1:"))
		s.file = filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(s.file, []byte(caddyfile), 0o600); err != nil {
			t.Fatal(err)
		}
		s.start(t)
		nodes = append(nodes, node{s, data})
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	cfg := testenv.HTTPClient(nodes[0].srv.url(), "app.fleet.example.com", up.URL)
	cfg.URLs = []string{nodes[1].srv.url()}
	c := testenv.StartClient(t, cfg)
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := c.Sessions(); n != 2 {
			return fmt.Errorf("the client has %d sessions, want 2", n)
		}
		return nil
	})

	roots := pebble.IssuerRoots(t)
	serial := func(addr string) string {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, &tls.Config{ServerName: "app.fleet.example.com", RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS handshake with %s: %v\npebble:\n%s", addr, err, pebble.Log())
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial(nodes[0].data)
	second := serial(nodes[1].data)
	if first != second {
		t.Errorf("the two servers present different certificates (serials %s and %s)", first, second)
	}
	if n := pebble.Orders(); n != 1 {
		t.Errorf("pebble saw %d ACME orders for one name served by two servers, want 1", n)
	}
}

// A client whose server restarts 100 times (gracefully, as a rolling
// update does) comes back each time and ends with no more goroutines or
// file descriptors than it had after the first.
func TestClientResourcesStayFlatAcross100ServerRestarts(t *testing.T) {
	const restarts = 100
	isolateCaddy(t)
	s := startFleetServer(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	c := testenv.StartClient(t, testenv.HTTPClient(s.url(), "app.example.com", up.URL))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	served := func() {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() error {
			if !c.Connected() {
				return fmt.Errorf("the client is not connected")
			}
			_, err := s.get(hc)
			return err
		})
	}
	served()
	base := testenv.SettledResources(t)
	for i := range restarts {
		s.proc.Cmd.Process.Signal(syscall.SIGTERM)
		if err := s.proc.Cmd.Wait(); err != nil {
			t.Logf("restart %d: caddy exited: %v", i+1, err)
		}
		s.start(t)
		served()
	}
	testenv.ResourcesBackTo(t, base, fmt.Sprintf("%d server restarts", restarts))
}

// A URL whose name resolves to several addresses gets a session to each
// server behind them, and a server added to the name gets one from the
// running client: the name "fleet.test" resolves (through the client's
// resolver, set here) to 127.0.0.1 and 127.0.0.2, then to 127.0.0.3 too,
// each a Caddy of its own on the same port.
func TestEveryAddressOfAServersNameGetsASessionAndANewOneJoins(t *testing.T) {
	isolateCaddy(t)
	port := sameFreePort(t)
	var servers []*fleetServer
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		s := &fleetServer{caddyServer: &caddyServer{admin: fmt.Sprintf("localhost:%d", testenv.FreePort(t)), site: fmt.Sprintf("%s:%d", ip, port)}}
		caddyfile := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n}\n:%d {\n\tbind %s\n\t%s\n}\n", s.admin, port, ip, inletsBoth)
		s.file = filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(s.file, []byte(caddyfile), 0o600); err != nil {
			t.Fatal(err)
		}
		s.start(t)
		servers = append(servers, s)
	}
	var mu sync.Mutex
	answer := []string{"127.0.0.1", "127.0.0.2"}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "named") }))
	defer up.Close()
	cfg := testenv.HTTPClient(fmt.Sprintf("ws://fleet.test:%d", port), "app.example.com", up.URL)
	cfg.ResolveInterval = 100 * time.Millisecond
	cfg.LookupHost = func(_ context.Context, host string) ([]string, error) {
		if host != "fleet.test" {
			return nil, fmt.Errorf("no such host %s", host)
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(answer), nil
	}
	c := testenv.StartClient(t, cfg)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	servedBy := func(s *fleetServer) error {
		body, err := s.get(hc)
		if err == nil && body != "named" {
			err = fmt.Errorf("%s answered %q", s.site, body)
		}
		return err
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		for _, s := range servers[:2] {
			if err := servedBy(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err := servedBy(servers[2]); err == nil {
		t.Fatal("127.0.0.3 served before the name had it")
	}
	mu.Lock()
	answer = append(answer, "127.0.0.3")
	mu.Unlock()
	testenv.Eventually(t, 20*time.Second, func() error { return servedBy(servers[2]) })
	if n := c.Sessions(); n != 3 {
		t.Fatalf("%d sessions, want 3: %v", n, c.Servers())
	}
}
