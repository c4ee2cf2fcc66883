package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/status"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Tokens of the tenant tests' tunnels.
const (
	acmeToken = "acme-token-0123456789"
	labToken  = "lab-token-0123456789"
)

// tenantServer is a server with two tunnels, acme (*.acme.example.com and
// port acmePort) and lab (lab.example.com, port labPort, at most labMax
// clients), a TCP data plane, and the handler's own token for unnamed
// clients.
type tenantServer struct {
	addr              string
	url               string
	acmePort, labPort int
}

func startTenantServer(t *testing.T, labMax int) *tenantServer {
	t.Helper()
	s := &tenantServer{acmePort: testenv.FreePort(t), labPort: testenv.FreePort(t)}
	globals := fmt.Sprintf(`	inlets {
		tunnel acme {
			token %s
			hosts *.acme.example.com
			tcp_ports %d
		}
		tunnel lab {
			token_sha256 %s
			hosts lab.example.com
			tcp_ports %d
			max_clients %d
		}
		tcp {
			bind 127.0.0.1
		}
	}`, acmeToken, s.acmePort, sha256Hex(labToken), s.labPort, labMax)
	port := testenv.FreePort(t)
	testenv.StartCaddy(t, adminPort, globals, fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth))
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.url = "ws://" + s.addr
	return s
}

func TestATunnelsClientCannotTakeAnotherTunnelsHostsOrPorts(t *testing.T) {
	waitNoSessions(t)
	srv := startTenantServer(t, 10)
	acme, lab := newUpstream(t, "acme"), newUpstream(t, "lab")
	acmeEcho, labEcho := newEchoUpstream(t, "acme-tcp"), newEchoUpstream(t, "lab-tcp")

	acmeCfg := testenv.HTTPClient(srv.url, "shop.acme.example.com", acme.URL)
	acmeCfg.Token, acmeCfg.ID = acmeToken, "acme-1"
	testenv.Client(t, acmeCfg)
	acmeTCP := tcpClient(srv.url, srv.acmePort, acmeEcho.Addr())
	acmeTCP.Token, acmeTCP.ID = acmeToken, "acme-tcp"
	testenv.Client(t, acmeTCP)

	// lab's token, announcing acme's names, the catch-all or acme's port:
	// refused, each with a reason that says what lab may serve.
	for _, tt := range []struct {
		cfg  client.Config
		want string
	}{
		{testenv.HTTPClient(srv.url, "shop.acme.example.com", lab.URL), "host shop.acme.example.com is not in tunnel lab's hosts (lab.example.com)"},
		{testenv.HTTPClient(srv.url, "*.acme.example.com", lab.URL), "host *.acme.example.com is not in tunnel lab's hosts"},
		{testenv.HTTPClient(srv.url, "*", lab.URL), "host * is not in tunnel lab's hosts"},
		{tcpClient(srv.url, srv.acmePort, labEcho.Addr()), fmt.Sprintf("port %d is not in tunnel lab's tcp_ports (%d)", srv.acmePort, srv.labPort)},
	} {
		tt.cfg.Token = labToken
		if err := connectOnce(t, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("lab client %+v: %v, want a refusal saying %q", tt.cfg.HTTP, err, tt.want)
		}
	}
	// The handler's own token may not take a tunnel's names either.
	if err := connectOnce(t, testenv.HTTPClient(srv.url, "shop.acme.example.com", lab.URL)); err == nil || !strings.Contains(err.Error(), "belongs to a tunnel of its own") {
		t.Errorf("server-token client announcing acme's host: %v", err)
	}

	// lab serving its own host, and an unnamed client serving the
	// catch-all: neither gets a single one of acme's requests.
	labCfg := testenv.HTTPClient(srv.url, "lab.example.com", lab.URL)
	labCfg.Token, labCfg.ID = labToken, "acme-1" // acme's client ID, too
	testenv.Client(t, labCfg)
	catchAll := testenv.HTTPClient(srv.url, "*", lab.URL)
	catchAll.ID = "catch-all"
	testenv.Client(t, catchAll)

	var wrong atomic.Int64
	parallel(t, 1000, func() error {
		code, e := request(t, http.MethodGet, srv.addr, "shop.acme.example.com", "/", nil)
		if code != http.StatusOK {
			return fmt.Errorf("status %d", code)
		}
		if e.Upstream != "acme" {
			wrong.Add(1)
		}
		return nil
	})
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d of 1000 requests for acme's host reached another tunnel's client", n)
	}
	// A name of acme's that no acme client announces is not caught by
	// the unnamed client's "*": acme's, and offline, 503.
	if code, _ := request(t, http.MethodGet, srv.addr, "other.acme.example.com", "/", nil); code != http.StatusServiceUnavailable {
		t.Errorf("acme's unannounced name answered %d, want 503 (not the catch-all's client)", code)
	}
	if code, e := request(t, http.MethodGet, srv.addr, "lab.example.com", "/", nil); code != http.StatusOK || e.Upstream != "lab" {
		t.Errorf("lab's host: %d %+v", code, e)
	}
	for range 20 {
		if got := whoServes(t, srv.acmePort); got != "acme-tcp" {
			t.Fatalf("acme's port served by %q", got)
		}
	}

	// Each tunnel's token sees its own clients in /status, marked with the
	// tunnel; lab's client that took acme's ID is lab's.
	for token, want := range map[string][]string{
		acmeToken:     {"acme/acme-1", "acme/acme-tcp"},
		labToken:      {"lab/acme-1"},
		testenv.Token: {"acme/acme-1", "acme/acme-tcp", "lab/acme-1", "/catch-all"},
	} {
		code, body := get(t, "http://"+srv.addr+"/status", token)
		if code != http.StatusOK {
			t.Fatalf("/status: %d %s", code, body)
		}
		if got := tunnelClients(decodeStatus(t, body)); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("/status with %s's token: clients %v, want %v", token[:4], got, want)
		}
	}
	// And its own series in /metrics, nothing else.
	labMetrics := string(scrapeText(t, "http://"+srv.addr+"/metrics", labToken))
	if strings.Contains(labMetrics, "acme") || strings.Contains(labMetrics, "go_goroutines") || !strings.Contains(labMetrics, `host="lab.example.com"`) {
		t.Errorf("lab's /metrics shows other series, or not its own:\n%s", labMetrics)
	}
	acmeMetrics := controlMetricsWith(t, srv.addr, acmeToken)
	if n := acmeMetrics.value("http_dataplane_requests_total", "code", "200", "host", "shop.acme.example.com", "method", "GET"); n < 1000 {
		t.Errorf("acme's /metrics counts %v requests for its host, want at least 1000", n)
	}
	if n := acmeMetrics.value("tcp_dataplane_connections_total", "port", strconv.Itoa(srv.acmePort)); n < 20 {
		t.Errorf("acme's /metrics counts %v connections to its port, want 20", n)
	}
}

// tunnelClients lists a status's clients as tunnel/client ID.
func tunnelClients(s status.Status) []string {
	var out []string
	for _, c := range s.Clients {
		out = append(out, c.Tunnel+"/"+c.ClientID)
	}
	return out
}

func controlMetricsWith(t *testing.T, addr, token string) exposition {
	t.Helper()
	return scrape(t, "http://"+addr+"/metrics", token)
}

func TestATunnelsMaxClientsRefusesTheNextUntilOneLeaves(t *testing.T) {
	waitNoSessions(t)
	srv := startTenantServer(t, 1)
	up := newUpstream(t, "lab")
	cfg := testenv.HTTPClient(srv.url, "lab.example.com", up.URL)
	cfg.Token = labToken
	first := testenv.Client(t, cfg)
	if err := connectOnce(t, cfg); err == nil || !strings.Contains(err.Error(), "tunnel lab has 1 clients connected, as many as it takes (its max_clients)") {
		t.Fatalf("a second lab client: %v, want the max_clients refusal", err)
	}
	// Another tunnel is not limited by lab's limit.
	acme := testenv.HTTPClient(srv.url, "a.acme.example.com", up.URL)
	acme.Token = acmeToken
	testenv.Client(t, acme)

	first.Stop()
	waitSessions(t, first.ID(), 0)
	if err := connectOnce(t, cfg); err != nil {
		t.Fatalf("after the first lab client left: %v", err)
	}
}

// A stranger's token, and a tunnel token at another path, are still
// counted and refused as before.
func TestAWrongTokenIsRefusedWhateverTheTunnels(t *testing.T) {
	srv := startTenantServer(t, 1)
	for _, token := range []string{"", "acme-token", acmeToken + "x", strings.ToUpper(labToken)} {
		if code, _ := get(t, "http://"+srv.addr+"/status", token); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", token, code)
		}
	}
	start := time.Now()
	if code, _ := get(t, "http://"+srv.addr+"/status", labToken); code != http.StatusOK {
		t.Errorf("lab's token: %d (%s)", code, time.Since(start))
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// tenantGlobals is the inlets global option with tunnel acme holding
// token, and a TCP data plane.
func tenantGlobals(token string, extra ...string) string {
	return fmt.Sprintf("\tinlets {\n\t\ttunnel acme {\n\t\t\ttoken %s\n\t\t\thosts *.acme.example.com\n%s\t\t}\n\t\ttcp {\n\t\t\tbind 127.0.0.1\n\t\t}\n\t}",
		token, strings.Join(extra, ""))
}

// A client whose token is replaced between its upgrade and its hello, as
// a rotation or a deletion does while it connects, is refused for good:
// the token was checked when the request came in, and again on admission.
func TestAHandshakeThatStraddlesATokenChangeIsRefused(t *testing.T) {
	waitNoSessions(t)
	port := testenv.FreePort(t)
	site := fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	c := testenv.StartCaddy(t, adminPort, tenantGlobals(acmeToken), site)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	_, _, hello := rawSessionWith(t, addr, acmeToken)
	if err := c.Load(testenv.Caddyfile(adminPort, tenantGlobals("acme-replaced-token"), site)); err != nil {
		t.Fatal(err)
	}
	answer := hello(frame(`{"clientID":"late","protocol":2,"mode":"http","http":[{"host":"a.acme.example.com","url":"http://127.0.0.1:9"}]}`))
	if answer.Type != tunnel.TypeReject || answer.Code != tunnel.RejectTokenRefused || answer.Retry != tunnel.RetryNever || !strings.Contains(answer.Reason, "the token of tunnel acme was replaced or has expired") {
		t.Fatalf("a hello after the token changed: %+v, want a token-refused rejection", answer)
	}
	if n := len(sessionsOf("late")); n != 0 {
		t.Fatalf("%d sessions of the late client", n)
	}
}

// A client of the server's own token is disconnected by a reload that
// drops the token, or that no longer allows its host: rotating a leaked
// server token cuts whoever holds it.
func TestAReloadWithoutTheServerTokenDisconnectsItsClients(t *testing.T) {
	waitNoSessions(t)
	up := newUpstream(t, "app")
	port := testenv.FreePort(t)
	site := func(token, allow string) string {
		return fmt.Sprintf(":%d {\n\tinlets {\n\t\ttoken %s\n\t\tallow_hosts %s\n\t}\n}", port, token, allow)
	}
	c := testenv.StartCaddy(t, adminPort, "", site(testenv.Token, "*.example.com"))
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)
	kept := testenv.Client(t, testenv.HTTPClient(url, "kept.example.com", up.URL))
	narrowed := testenv.Client(t, testenv.HTTPClient(url, "other.example.com", up.URL))

	// The same token, a narrower allow_hosts: the client whose host is
	// no longer allowed goes, the other stays.
	if err := c.Load(testenv.Caddyfile(adminPort, "", site(testenv.Token, "kept.example.com"))); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, narrowed.ID(), 0)
	if n := len(sessionsOf(kept.ID())); n != 1 {
		t.Fatalf("the client whose host is still allowed has %d sessions", n)
	}
	// A new token: the old token's client goes.
	if err := c.Load(testenv.Caddyfile(adminPort, "", site("a-new-server-token", "kept.example.com"))); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, kept.ID(), 0)
	// Still allowed by the handler, with no client: offline, 503.
	if code, _ := request(t, http.MethodGet, fmt.Sprintf("127.0.0.1:%d", port), "kept.example.com", "/", nil); code != http.StatusServiceUnavailable {
		t.Errorf("the old token's host after the rotation: %d, want 503", code)
	}
}

// A tunnel's tcp_ports may not include a port Caddy's own sites listen
// on: its clients would receive that site's connections.
func TestATunnelPortThatIsCaddysOwnIsRefused(t *testing.T) {
	port := testenv.FreePort(t)
	site := fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	c := testenv.StartCaddy(t, adminPort, tenantGlobals(acmeToken), site)
	err := c.Load(testenv.Caddyfile(adminPort, tenantGlobals(acmeToken, fmt.Sprintf("\t\t\ttcp_ports %d\n", port)), site))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("tunnel acme: tcp_ports: %d is a port of Caddy's own (Caddy's server srv0 listens on :%d)", port, port)) {
		t.Fatalf("a tunnel port that is the site's: %v", err)
	}
	// The running config is untouched: the site still answers. The
	// refusal comes at the apps' start: if Caddy started the refused
	// config's HTTP server first, its socket (SO_REUSEPORT, beside the
	// running one) is closed a moment after Load returns, and a
	// connection the kernel gave it meanwhile is reset.
	testenv.Eventually(t, 10*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/status", port), nil)
		req.Header.Set("Authorization", "Bearer "+testenv.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the site after the refused config: %d", resp.StatusCode)
		}
		return nil
	})
}

// A reload that lowers a tunnel's max_clients disconnects the clients
// that connected last, down to the new limit.
func TestLoweringATunnelsMaxClientsDisconnectsTheNewest(t *testing.T) {
	waitNoSessions(t)
	up := newUpstream(t, "acme")
	port := testenv.FreePort(t)
	site := fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	c := testenv.StartCaddy(t, adminPort, tenantGlobals(acmeToken), site)
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)
	var clients []*testenv.RunningClient
	for i := range 3 {
		cfg := testenv.HTTPClient(url, fmt.Sprintf("c%d.acme.example.com", i), up.URL)
		cfg.Token, cfg.ID = acmeToken, fmt.Sprintf("acme-%d", i)
		cfg.MaxBackoff = time.Hour // a refused client stays out while the test looks
		clients = append(clients, testenv.Client(t, cfg))
	}
	if err := c.Load(testenv.Caddyfile(adminPort, tenantGlobals(acmeToken, "\t\t\tmax_clients 2\n"), site)); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, "acme-2", 0)
	for _, id := range []string{"acme-0", "acme-1"} {
		if n := len(sessionsOf(id)); n != 1 {
			t.Errorf("%s, connected before the newest, has %d sessions", id, n)
		}
	}
}
