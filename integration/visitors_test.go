package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
	"golang.org/x/crypto/bcrypt"
)

// visitorsServer is a server whose tunnel acme serves app.acme.example.com
// (HTTP), a TCP port and a UDP port, with the given visitors block, and
// the upstreams of acme's two clients (one HTTP, one TCP and UDP), each
// counting what reaches it.
type visitorsServer struct {
	*testenv.Caddy
	addr                 string
	tcpPort, udpPort     int
	site                 string
	httpHits, tcpHits    atomic.Int64
	udpHits              atomic.Int64
	httpClient, l4Client *testenv.RunningClient
}

const visitorsHost = "app.acme.example.com"

func (s *visitorsServer) globals(visitors string) string {
	return fmt.Sprintf("\tinlets {\n\t\ttunnel acme {\n\t\t\ttoken %s\n\t\t\thosts %s\n\t\t\ttcp_ports %d\n\t\t\tudp_ports %d\n\t\t\tvisitors {\n%s\n\t\t\t}\n\t\t}\n\t\ttcp {\n\t\t\tbind 127.0.0.1\n\t\t}\n\t}",
		acmeToken, visitorsHost, s.tcpPort, s.udpPort, visitors)
}

// startVisitorsServer starts the server and acme's clients; with no
// clients, only the server.
func startVisitorsServer(t *testing.T, visitors string, clients bool) *visitorsServer {
	t.Helper()
	s := &visitorsServer{tcpPort: testenv.FreePort(t), udpPort: testenv.FreePort(t)}
	port := testenv.FreePort(t)
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.site = fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	s.Caddy = testenv.StartCaddy(t, adminPort, s.globals(visitors), s.site)
	if !clients {
		return s
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.httpHits.Add(1)
		io.WriteString(w, "served")
	}))
	t.Cleanup(web.Close)
	tcpUp := serveTCP(t, "127.0.0.1", func(c net.Conn) {
		s.tcpHits.Add(1)
		io.WriteString(c, "served\n")
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.udpHits.Add(1)
			pc.WriteTo(buf[:n], from)
		}
	}()
	httpCfg := testenv.HTTPClient("ws://"+s.addr, visitorsHost, web.URL)
	httpCfg.Token = acmeToken
	s.httpClient = testenv.Client(t, httpCfg)
	l4Cfg := client.Config{URL: "ws://" + s.addr, Token: acmeToken,
		TCP: []tunnel.TCPUpstream{{Port: s.tcpPort, Upstream: tcpUp.Addr()}},
		UDP: []tunnel.UDPUpstream{{Port: s.udpPort, Upstream: pc.LocalAddr().String()}}}
	s.l4Client = testenv.Client(t, l4Cfg)
	return s
}

// reload replaces the visitors block, keeping everything else.
func (s *visitorsServer) reload(t *testing.T, visitors string) {
	t.Helper()
	if err := s.Load(testenv.Caddyfile(adminPort, s.globals(visitors), s.site)); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// curlFrom GETs the tunnel's host through the site from the source
// address from, and returns the status, the Retry-After and the body.
func (s *visitorsServer) curlFrom(t *testing.T, from string) (int, string, string) {
	t.Helper()
	out, err := exec.Command("curl", "-s", "--max-time", "10", "--interface", from, "-H", "Host: "+visitorsHost,
		"-D", "-", "http://"+s.addr+"/").Output()
	if err != nil {
		t.Fatalf("curl --interface %s: %v", from, err)
	}
	head, body, _ := strings.Cut(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n\n")
	var code int
	fmt.Sscanf(head, "HTTP/1.1 %d", &code)
	retry := ""
	for _, line := range strings.Split(head, "\n") {
		if v, ok := strings.CutPrefix(line, "Retry-After: "); ok {
			retry = v
		}
	}
	return code, retry, body
}

// tcpFrom connects to the tunnel's TCP port from the source address from
// and returns the first line the upstream sends, or the error.
func (s *visitorsServer) tcpFrom(t *testing.T, from string) (string, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.tcpPort))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// udpFrom sends a datagram to the tunnel's UDP port from the source
// address from, and returns the answer if one comes within wait.
func (s *visitorsServer) udpFrom(t *testing.T, from string, wait time.Duration) (string, error) {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.udpPort})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// refused is the count of visitors acme's policy refused, by transport and
// reason.
func refused(t *testing.T, transport, reason string) float64 {
	return adminMetrics(t).value("dataplane_visitors_refused_total", "tunnel", "acme", "transport", transport, "reason", reason)
}

// A tunnel that allows 127.0.0.1 refuses a visitor from 127.0.0.2 on
// HTTP, TCP and UDP before anything of it reaches a client, and serves
// 127.0.0.1; a reload that changes the list applies at once, and no client
// reconnects for it.
func TestATunnelsVisitorAllowListRefusesOthersOnEveryTransport(t *testing.T) {
	s := startVisitorsServer(t, "\t\t\t\tallow 127.0.0.1/32", true)
	httpSession, l4Session := sessionsOf(s.httpClient.ID()), sessionsOf(s.l4Client.ID())
	// The counters are the process's, over its tests.
	baseHTTP, baseTCP, baseUDP := refused(t, "http", "address"), refused(t, "tcp", "address"), refused(t, "udp", "address")
	if len(httpSession) != 1 || len(l4Session) != 1 {
		t.Fatalf("sessions: %d HTTP, %d TCP/UDP; want one each", len(httpSession), len(l4Session))
	}

	if code, _, body := s.curlFrom(t, "127.0.0.2"); code != http.StatusForbidden || !strings.Contains(body, "visitors from 127.0.0.2 may not visit "+visitorsHost) {
		t.Fatalf("HTTP from 127.0.0.2: %d %q, want 403", code, body)
	}
	if line, err := s.tcpFrom(t, "127.0.0.2"); err == nil || line != "" {
		t.Fatalf("TCP from 127.0.0.2 read %q, %v; want nothing", line, err)
	}
	if answer, err := s.udpFrom(t, "127.0.0.2", 300*time.Millisecond); err == nil {
		t.Fatalf("UDP from 127.0.0.2 answered %q", answer)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if h, tc, u := refused(t, "http", "address")-baseHTTP, refused(t, "tcp", "address")-baseTCP, refused(t, "udp", "address")-baseUDP; h != 1 || tc != 1 || u < 1 {
			return fmt.Errorf("refusals counted: http %v, tcp %v, udp %v; want 1, 1, at least 1", h, tc, u)
		}
		return nil
	})
	// The tunnel's own token reads its refusals at /metrics.
	if got := scrape(t, "http://"+s.addr+"/metrics", acmeToken).value("dataplane_visitors_refused_total", "tunnel", "acme", "transport", "http", "reason", "address"); got != baseHTTP+1 {
		t.Fatalf("acme's /metrics counts %v HTTP refusals, want %v", got, baseHTTP+1)
	}
	if h, tc, u := s.httpHits.Load(), s.tcpHits.Load(), s.udpHits.Load(); h+tc+u != 0 {
		t.Fatalf("the upstreams saw a refused visitor: %d HTTP requests, %d TCP connections, %d datagrams", h, tc, u)
	}

	if code, _, body := s.curlFrom(t, "127.0.0.1"); code != http.StatusOK || body != "served" {
		t.Fatalf("HTTP from 127.0.0.1: %d %q", code, body)
	}
	if line, err := s.tcpFrom(t, "127.0.0.1"); err != nil || line != "served" {
		t.Fatalf("TCP from 127.0.0.1: %q, %v", line, err)
	}
	if answer, err := s.udpFrom(t, "127.0.0.1", 10*time.Second); err != nil || answer != "ping" {
		t.Fatalf("UDP from 127.0.0.1: %q, %v", answer, err)
	}

	// The list changes with a reload; the clients stay connected.
	s.reload(t, "\t\t\t\tallow 127.0.0.2/32")
	if code, _, _ := s.curlFrom(t, "127.0.0.1"); code != http.StatusForbidden {
		t.Fatalf("HTTP from 127.0.0.1 after the reload: %d, want 403", code)
	}
	if code, _, body := s.curlFrom(t, "127.0.0.2"); code != http.StatusOK || body != "served" {
		t.Fatalf("HTTP from 127.0.0.2 after the reload: %d %q", code, body)
	}
	if line, err := s.tcpFrom(t, "127.0.0.2"); err != nil || line != "served" {
		t.Fatalf("TCP from 127.0.0.2 after the reload: %q, %v", line, err)
	}
	if answer, err := s.udpFrom(t, "127.0.0.2", 10*time.Second); err != nil || answer != "ping" {
		t.Fatalf("UDP from 127.0.0.2 after the reload: %q, %v", answer, err)
	}
	if now := sessionsOf(s.httpClient.ID()); len(now) != 1 || now[0] != httpSession[0] {
		t.Fatal("the HTTP client reconnected for a change of its visitors")
	}
	if now := sessionsOf(s.l4Client.ID()); len(now) != 1 || now[0] != l4Session[0] {
		t.Fatal("the TCP/UDP client reconnected for a change of its visitors")
	}
}

// A burst of 200 requests from one address past the tunnel's rate gets
// 429s with Retry-After, each counted; another address keeps its own
// rate.
func TestATunnelsRequestRateLimitsEachVisitorAddress(t *testing.T) {
	s := startVisitorsServer(t, "\t\t\t\trate 10/s burst 20", true)
	base := refused(t, "http", "rate") // the process's, over its tests
	start := time.Now()
	ok, limited := 0, 0
	for range 200 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+"/", nil)
		req.Host = visitorsHost
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("a 429 without Retry-After")
			}
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	elapsed := time.Since(start)
	// The burst, and what the rate refilled meanwhile: no more, and no
	// less than the burst (a request must take one token, not two).
	if most := 20 + int(10*elapsed.Seconds()) + 1; ok > most || ok < 20 || limited == 0 {
		t.Fatalf("200 requests in %s: %d served, %d limited; want 20 to %d served", elapsed, ok, limited, most)
	}
	if got := refused(t, "http", "rate") - base; got != float64(limited) {
		t.Fatalf("%v refusals counted for %d 429s", got, limited)
	}
	if code, _, body := s.curlFrom(t, "127.0.0.2"); code != http.StatusOK || body != "served" {
		t.Fatalf("another address: %d %q", code, body)
	}
}

// A host a tunnel owns with no client connected answers 503 with
// Retry-After, so that a load balancer in front fails over; handle_errors
// replaces the page, with the host and the reason in variables.
func TestAnOfflineTunnelsHostAnswers503WithRetryAfterAndHandleErrorsPage(t *testing.T) {
	s := startVisitorsServer(t, "\t\t\t\tallow 127.0.0.0/8", false)
	code, retry, body := s.curlFrom(t, "127.0.0.1")
	if code != http.StatusServiceUnavailable || retry == "" || !strings.Contains(body, visitorsHost+" is offline") {
		t.Fatalf("offline host: %d, Retry-After %q, %q; want 503 with Retry-After", code, retry, body)
	}

	s.site = strings.TrimSuffix(s.site, "}") + "\thandle_errors {\n\t\trespond \"{http.vars.inlets.host} is {http.vars.inlets.reason} ({http.error.status_code})\" {http.error.status_code}\n\t}\n}"
	s.reload(t, "\t\t\t\tallow 127.0.0.0/8")
	code, retry, body = s.curlFrom(t, "127.0.0.1")
	if code != http.StatusServiceUnavailable || retry == "" || body != visitorsHost+" is offline (503)" {
		t.Fatalf("offline host with handle_errors: %d, Retry-After %q, %q", code, retry, body)
	}
	// A host no tunnel owns and nothing allows is still a 502.
	if code, _ := testenv.Get(t, s.addr, "unknown.example.org", "/"); code != http.StatusBadGateway {
		t.Fatalf("a host nobody owns: %d, want 502", code)
	}
}

// A tunnel's allow list guards its TLS names on a layer4 server's port
// shared with Caddy's own site: a visitor from 127.0.0.2 is cut before its
// ClientHello reaches the client, one from 127.0.0.1 gets the upstream.
func TestATunnelsVisitorAllowListGuardsItsTLSNames(t *testing.T) {
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (CI installs it, see .ci/run)", tool)
		}
	}
	up := tlsUpstream(t, "a.test")
	globals := fmt.Sprintf("\tinlets {\n\t\ttunnel acme {\n\t\t\ttoken %s\n\t\t\thosts *.test\n\t\t\tvisitors {\n\t\t\t\tallow 127.0.0.1/32\n\t\t\t}\n\t\t}\n\t}", acmeToken)
	srv, shared, url := sniServerWith(t, "", globals)
	c := testenv.Start(t, testenv.Binary(t, "inlets"), "tcp", "client", "--url", url, "--token", acmeToken, "--id", "sni-visitors",
		"--upstream", "127.0.0.1", "--sni", fmt.Sprintf("a.test=%d", up))
	c.WaitOutput(t, 10*time.Second, "msg=connected")

	if code, body := curlTLS(t, shared, "a.test", "127.0.0.2"); code == 0 {
		t.Fatalf("a visitor from 127.0.0.2 reached a.test's upstream: %.200q", body)
	}
	if code, body := curlTLS(t, shared, "a.test", "127.0.0.1"); code != 0 || !strings.Contains(body, "s_server") {
		t.Fatalf("a visitor from 127.0.0.1: exit %d, %.200q", code, body)
	}
	m := scrape(t, "http://"+srv.admin+"/metrics", "")
	if n := m.value("dataplane_visitors_refused_total", "tunnel", "acme", "transport", "tls", "reason", "address"); n != 1 {
		t.Errorf("TLS refusals counted: %v, want 1", n)
	}
	if n := m.value("tls_dataplane_connections_total", "host", "a.test"); n != 1 {
		t.Errorf("TLS connections forwarded: %v, want 1 (the visitor from 127.0.0.1)", n)
	}
}

// A tunnel capped at 10 MB/s down carries a 50 MB download through its
// HTTP client, and 20 MB through its TCP client, at or under the cap: no
// faster than the bucket's burst and 10 MB a second allow, whatever the
// load (load only slows it).
func TestATunnelsBandwidthCapHoldsItsDownloads(t *testing.T) {
	const capBytes = 10 << 20
	s := &visitorsServer{tcpPort: testenv.FreePort(t), udpPort: testenv.FreePort(t)}
	port := testenv.FreePort(t)
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.site = fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	s.Caddy = testenv.StartCaddy(t, adminPort, s.globals(fmt.Sprintf("\t\t\t\tbandwidth_down %dB/s", capBytes)), s.site)
	up := newUpstream(t, "big")
	blob := serveTCP(t, "127.0.0.1", func(c net.Conn) { io.Copy(c, payload(20<<20)) })
	httpCfg := testenv.HTTPClient("ws://"+s.addr, visitorsHost, up.URL)
	httpCfg.Token = acmeToken
	testenv.Client(t, httpCfg)
	testenv.Client(t, client.Config{URL: "ws://" + s.addr, Token: acmeToken, TCP: []tunnel.TCPUpstream{{Port: s.tcpPort, Upstream: blob.Addr()}}})

	// The bucket's burst: a tenth of a second's worth.
	const burst = capBytes / 10
	check := func(what string, n int64, took time.Duration) {
		t.Helper()
		rate := float64(n) / took.Seconds()
		t.Logf("%s: %d MB in %s, %.1f MB/s under a cap of %d MB/s", what, n>>20, took.Round(time.Millisecond), rate/(1<<20), capBytes>>20)
		if least := time.Duration(float64(n-burst) / capBytes * float64(time.Second)); took < least {
			t.Fatalf("%s: %d bytes in %s, faster than the cap allows (at least %s)", what, n, took, least)
		}
	}

	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/download?size=%d", s.addr, 50<<20), nil)
	req.Host = visitorsHost
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 50<<20 {
		t.Fatalf("HTTP download: %d bytes, %v", n, err)
	}
	check("HTTP", n, time.Since(start))

	start = time.Now()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err = io.Copy(io.Discard, c)
	if err != nil || n != 20<<20 {
		t.Fatalf("TCP download: %d bytes, %v", n, err)
	}
	check("TCP", n, time.Since(start))
}

// A tunnel capped at 10 MB/s up takes a 20 MB upload through its TCP
// client at or under the cap.
func TestATunnelsBandwidthCapHoldsItsUploads(t *testing.T) {
	const capBytes, size = 10 << 20, 20 << 20
	s := &visitorsServer{tcpPort: testenv.FreePort(t), udpPort: testenv.FreePort(t)}
	port := testenv.FreePort(t)
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.site = fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	s.Caddy = testenv.StartCaddy(t, adminPort, s.globals(fmt.Sprintf("\t\t\t\tbandwidth_up %dB/s", capBytes)), s.site)
	sink := newReplyAfterEOFUpstream(t, 0)
	testenv.Client(t, client.Config{URL: "ws://" + s.addr, Token: acmeToken, TCP: []tunnel.TCPUpstream{{Port: s.tcpPort, Upstream: sink.Addr()}}})

	start := time.Now()
	c := dialTunnel(t, s.tcpPort)
	if _, err := io.Copy(c, payload(size)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if err != nil || !strings.HasPrefix(line, fmt.Sprintf("%d %s", size, payloadSHA(size))) {
		t.Fatalf("the upstream read %q, %v; want all %d bytes", line, err, size)
	}
	t.Logf("20 MB up in %s, %.1f MB/s under a cap of 10 MB/s", took.Round(time.Millisecond), size/took.Seconds()/(1<<20))
	if least := time.Duration(float64(size-capBytes/10) / capBytes * float64(time.Second)); took < least {
		t.Fatalf("%d bytes up in %s, faster than the cap allows (at least %s)", size, took, least)
	}
}

// A tunnel's basic_auth (Caddy's, with its bcrypt hashes) asks its HTTP
// visitors for a user name and password: none or a wrong one gets 401,
// the right one reaches the client; auth_skip leaves /hook/* open, as a
// webhook needs; the refusals are counted.
func TestATunnelsBasicAuthGuardsItsHostButItsOpenPaths(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s := startVisitorsServer(t, fmt.Sprintf("\t\t\t\tbasic_auth {\n\t\t\t\t\talice %s\n\t\t\t\t}\n\t\t\t\tauth_skip /hook/*", hash), true)
	base := refused(t, "http", "auth") // the process's, over its tests
	get := func(path, user, password string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+path, nil)
		req.Host = visitorsHost
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	if code, challenge := get("/", "", ""); code != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Basic") {
		t.Fatalf("no credentials: %d, WWW-Authenticate %q; want 401 with a Basic challenge", code, challenge)
	}
	if code, _ := get("/", "alice", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %d, want 401", code)
	}
	if code, _ := get("/", "mallory", "correct horse"); code != http.StatusUnauthorized {
		t.Fatalf("an unknown user: %d, want 401", code)
	}
	if s.httpHits.Load() != 0 {
		t.Fatalf("the upstream saw %d unauthenticated requests", s.httpHits.Load())
	}
	if code, _ := get("/", "alice", "correct horse"); code != http.StatusOK {
		t.Fatalf("the right password: %d, want 200", code)
	}
	if code, _ := get("/hook/deploy", "", ""); code != http.StatusOK {
		t.Fatalf("/hook/deploy without credentials: %d, want 200 (auth_skip)", code)
	}
	if n := refused(t, "http", "auth") - base; n != 3 {
		t.Fatalf("%v auth refusals counted, want 3", n)
	}
}

// A tunnel's forward_auth (Caddy's) asks the operator's service about
// each request: the service's refusal reaches the visitor and nothing
// reaches the client; its 2xx lets the request on with the headers it
// names copied, and a visitor cannot forge them.
func TestATunnelsForwardAuthLetsTheOperatorsServiceDecide(t *testing.T) {
	var asked atomic.Int64
	authSvc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.URL.Path != "/verify" || r.Method != http.MethodGet || r.Header.Get("X-Forwarded-Uri") == "" {
			http.Error(w, "bad auth request "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
			return
		}
		if r.Header.Get("X-Token") != "good" {
			http.Error(w, "denied by the operator's service", http.StatusForbidden)
			return
		}
		w.Header().Set("Remote-User", "alice")
	}))
	t.Cleanup(authSvc.Close)
	s := &visitorsServer{tcpPort: testenv.FreePort(t), udpPort: testenv.FreePort(t)}
	port := testenv.FreePort(t)
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.site = fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	s.Caddy = testenv.StartCaddy(t, adminPort, s.globals(fmt.Sprintf("\t\t\t\tforward_auth %s {\n\t\t\t\t\turi /verify\n\t\t\t\t\tcopy_headers Remote-User\n\t\t\t\t}\n\t\t\t\tauth_skip /hook/*", strings.TrimPrefix(authSvc.URL, "http://"))), s.site)
	var seenUser atomic.Value
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.httpHits.Add(1)
		seenUser.Store(r.Header.Get("Remote-User"))
		io.WriteString(w, "served")
	}))
	t.Cleanup(web.Close)
	cfg := testenv.HTTPClient("ws://"+s.addr, visitorsHost, web.URL)
	cfg.Token = acmeToken
	testenv.Client(t, cfg)
	base := refused(t, "http", "auth") // the process's, over its tests
	var getPath func(path, token, user string) (int, string)
	get := func(token, user string) (int, string) {
		t.Helper()
		return getPath("/page?x=1", token, user)
	}
	getPath = func(path, token, user string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+path, nil)
		req.Host = visitorsHost
		req.Header.Set("X-Token", token)
		if user != "" {
			req.Header.Set("Remote-User", user)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("bad", "bob"); code != http.StatusForbidden || !strings.Contains(body, "denied by the operator's service") {
		t.Fatalf("refused by the service: %d %q", code, body)
	}
	if s.httpHits.Load() != 0 {
		t.Fatal("a request the service refused reached the upstream")
	}
	if code, body := get("good", "bob"); code != http.StatusOK || body != "served" {
		t.Fatalf("allowed by the service: %d %q", code, body)
	}
	if u, _ := seenUser.Load().(string); u != "alice" {
		t.Fatalf("the upstream saw Remote-User %q, want alice from the service (not the visitor's bob)", u)
	}
	if asked.Load() != 2 {
		t.Fatalf("the service was asked %d times, want 2", asked.Load())
	}
	// A path auth_skip leaves open is not asked about, and a visitor's
	// own Remote-User does not reach the upstream through it either.
	if code, body := getPath("/hook/x", "bad", "admin"); code != http.StatusOK || body != "served" {
		t.Fatalf("/hook/x: %d %q", code, body)
	}
	if u, _ := seenUser.Load().(string); u != "" || asked.Load() != 2 {
		t.Fatalf("through auth_skip the upstream saw Remote-User %q (the service asked %d times); want none", u, asked.Load())
	}
	if n := refused(t, "http", "auth") - base; n != 1 {
		t.Fatalf("%v auth refusals counted, want 1", n)
	}
}

// A site that composes reverse_proxy { dynamic inlets; transport inlets }
// itself, instead of the inlets handler, still holds visitors to their
// tunnel's policy: the transport refuses an address the list leaves out,
// and a tunnel that asks for authentication, which only the handler
// runs, is refused rather than let by.
func TestAComposedReverseProxyHoldsVisitorsToTheirTunnelsPolicy(t *testing.T) {
	s := &visitorsServer{tcpPort: testenv.FreePort(t), udpPort: testenv.FreePort(t)}
	port := testenv.FreePort(t)
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.site = fmt.Sprintf(":%d {\n\tinlets control {\n\t\ttoken %s\n\t}\n\treverse_proxy {\n\t\tdynamic inlets\n\t\ttransport inlets\n\t}\n}", port, testenv.Token)
	s.Caddy = testenv.StartCaddy(t, adminPort, s.globals("\t\t\t\tallow 127.0.0.1/32"), s.site)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.httpHits.Add(1)
		io.WriteString(w, "served")
	}))
	t.Cleanup(web.Close)
	cfg := testenv.HTTPClient("ws://"+s.addr, visitorsHost, web.URL)
	cfg.Token = acmeToken
	c := testenv.Client(t, cfg)

	if code, _, body := s.curlFrom(t, "127.0.0.2"); code != http.StatusForbidden || !strings.Contains(body, "visitors from 127.0.0.2 may not visit "+visitorsHost) {
		t.Fatalf("from 127.0.0.2 through a composed reverse_proxy: %d %q, want 403", code, body)
	}
	if code, _, body := s.curlFrom(t, "127.0.0.1"); code != http.StatusOK || body != "served" {
		t.Fatalf("from 127.0.0.1: %d %q", code, body)
	}
	if n := s.httpHits.Load(); n != 1 {
		t.Fatalf("the upstream saw %d requests, want 1", n)
	}

	s.reload(t, "\t\t\t\tforward_auth 127.0.0.1:1 {\n\t\t\t\t\turi /verify\n\t\t\t\t}")
	if code, _, body := s.curlFrom(t, "127.0.0.1"); code != http.StatusForbidden || !strings.Contains(body, "asks its visitors to authenticate, which this route of the server cannot do") {
		t.Fatalf("a tunnel with forward_auth through a composed reverse_proxy: %d %q, want 403", code, body)
	}
	if n := s.httpHits.Load(); n != 1 {
		t.Fatalf("the upstream saw %d requests, want still 1", n)
	}
	if len(sessionsOf(c.ID())) != 1 {
		t.Fatal("the client is gone")
	}
}

// dig from 127.0.0.2 gets no answer from a UDP port whose tunnel allows
// 127.0.0.1 only: its datagram is dropped before a flow starts, and
// counted; dig from 127.0.0.1 gets dnsmasq's answer.
func TestATunnelsAllowListDropsADigFromAnotherAddress(t *testing.T) {
	dns := startDnsmasq(t, 1)
	s := startVisitorsServer(t, "\t\t\t\tallow 127.0.0.1/32", false)
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "tcp", "client", "--url", "ws://"+s.addr, "--token", acmeToken, "--id", "dig-visitors",
		"--upstream", "127.0.0.1", "--udp-ports", fmt.Sprintf("%d:%d", s.udpPort, dns.port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	base := refused(t, "udp", "address")
	query := func(from string) (string, error) {
		out, err := exec.Command("dig", "@127.0.0.1", "-p", fmt.Sprint(s.udpPort), "-b", from, "+short", "+tries=1", "+time=1", "host-0.example.lan", "A").CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := query("127.0.0.2"); err == nil && out == dns.names["host-0.example.lan"] {
		t.Fatalf("dig -b 127.0.0.2 was answered: %q", out)
	}
	if n := refused(t, "udp", "address") - base; n < 1 {
		t.Fatalf("%v UDP refusals counted for dig -b 127.0.0.2", n)
	}
	if out, err := query("127.0.0.1"); err != nil || out != dns.names["host-0.example.lan"] {
		t.Fatalf("dig -b 127.0.0.1: %q, %v; want %s", out, err, dns.names["host-0.example.lan"])
	}
}
