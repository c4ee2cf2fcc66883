package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"crypto/sha256"
	"encoding/hex"

	"github.com/gorilla/websocket"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

var adminPort = testenv.AdminPort()

// inletsBoth is a handler serving both planes with the test token. The
// tests send many wrong tokens from 127.0.0.1 on purpose, each to see it
// refused: auth_failures lets them, where the test is not about it.
const inletsBoth = "inlets {\n\t\ttoken " + testenv.Token + "\n\t\tauth_failures 100000\n\t}"

// server loads a one-site config whose site block is body, on a free port,
// and returns the site's address.
func server(t *testing.T, body string) (string, *testenv.Caddy) {
	t.Helper()
	port := testenv.FreePort(t)
	c := testenv.StartCaddy(t, adminPort, "", fmt.Sprintf(":%d {\n\t%s\n}", port, body))
	return fmt.Sprintf("127.0.0.1:%d", port), c
}

// request sends method to the site with the given Host and decodes the
// upstream's echo.
func request(t *testing.T, method, addr, host, path string, body io.Reader) (int, echo) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e echo
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("decoding echo %q: %v", raw, err)
		}
	}
	return resp.StatusCode, e
}

// sessionsOf returns the live sessions of a client ID.
func sessionsOf(id string) []*registry.Session {
	var out []*registry.Session
	if reg := registry.Current(); reg != nil {
		for _, s := range reg.Sessions() {
			if s.Hello.ClientID == id {
				out = append(out, s)
			}
		}
	}
	return out
}

func TestGetAndPostReachUpstreamWithHostAndForwardedFor(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", up.URL))

	code, e := request(t, http.MethodGet, addr, "app.example.com", "/hello?x=1", nil)
	if code != http.StatusOK || e.Upstream != "app" || e.Method != "GET" || e.Path != "/hello" {
		t.Fatalf("GET: got %d %+v", code, e)
	}
	if e.Host != "app.example.com" || e.XFF != "127.0.0.1" || e.XFProto != "http" || e.XFHost != "app.example.com" {
		t.Errorf("GET: Host and X-Forwarded-* not as the visitor sent them: %+v", e)
	}

	body := "hello through the tunnel"
	code, e = request(t, http.MethodPost, addr, "app.example.com", "/form", strings.NewReader(body))
	sum := sha256.Sum256([]byte(body))
	if code != http.StatusOK || e.Method != "POST" || e.BodySHA != hex.EncodeToString(sum[:]) || e.Host != "app.example.com" || e.XFF != "127.0.0.1" {
		t.Fatalf("POST: got %d %+v", code, e)
	}
}

// dialWebsocket opens a websocket to path through the site, as host.
func dialWebsocket(t *testing.T, addr, host, path string) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+path, http.Header{"Host": {host}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("websocket dial (HTTP %d): %v", status, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// echoOnce sends msg on ws and checks the upstream's echo.
func echoOnce(t *testing.T, ws *websocket.Conn, upstream, msg string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if want := upstream + ": " + msg; string(got) != want {
		t.Fatalf("websocket echo: got %q, want %q", got, want)
	}
}

func TestWebsocketEchoThroughTunnel(t *testing.T) {
	up := newUpstream(t, "ws")
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "chat.example.com", up.URL))

	ws := dialWebsocket(t, addr, "chat.example.com", "/ws")
	for i := range 5 {
		echoOnce(t, ws, "ws", fmt.Sprintf("message %d", i))
	}
}

func TestServerSentEventsArriveOneByOne(t *testing.T) {
	up := newUpstream(t, "sse")
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "events.example.com", up.URL))

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/sse", nil)
	req.Host = "events.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	// The upstream holds event N+1 until we have read event N: if anything
	// buffered the stream, event 1 would never arrive.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	for i := 1; i <= 3; i++ {
		select {
		case line := <-lines:
			if want := fmt.Sprintf("data: event %d", i); line != want {
				t.Fatalf("got %q, want %q", line, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not arrive before the next was released: the stream is buffered", i)
		}
		if i < 3 {
			up.sseNext <- struct{}{}
		}
	}
}

func TestLargeUploadAndDownloadKeepTheirSHA256(t *testing.T) {
	const size = 50 << 20
	up := newUpstream(t, "bulk")
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "files.example.com", up.URL))
	want := payloadSHA(size)

	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/download?size=%d", addr, size), nil)
	req.Host = "files.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatalf("download: %d bytes, err %v, sha256 match %v", n, err, hex.EncodeToString(h.Sum(nil)) == want)
	}

	// Upload with no Content-Length: chunked, streamed through as it goes.
	code, e := request(t, http.MethodPost, addr, "files.example.com", "/", io.NopCloser(payload(size)))
	if code != http.StatusOK || e.BodyBytes != size || e.BodySHA != want {
		t.Fatalf("upload: %d, %d bytes, sha256 match %v", code, e.BodyBytes, e.BodySHA == want)
	}
}

func TestRoutingExactWildcardAndCatchAll(t *testing.T) {
	exact, wild, any := newUpstream(t, "exact"), newUpstream(t, "wildcard"), newUpstream(t, "catch-all")
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr,
		"app.example.com", exact.URL,
		"*.example.com", wild.URL,
		"*", any.URL))

	for host, want := range map[string]string{
		"app.example.com":      "exact",
		"APP.Example.com:8080": "exact",
		"grafana.example.com":  "wildcard",
		"a.b.example.com":      "catch-all", // a wildcard covers one label, as in Caddy
		"example.com":          "catch-all",
		"other.org":            "catch-all",
	} {
		code, e := request(t, http.MethodGet, addr, host, "/", nil)
		if code != http.StatusOK || e.Upstream != want {
			t.Errorf("Host %s: got %d from %q, want %q", host, code, e.Upstream, want)
		}
	}
}

func TestTwoClientsShareAHostAndOneCanLeave(t *testing.T) {
	upA, upB := newUpstream(t, "a"), newUpstream(t, "b")
	addr, _ := server(t, inletsBoth)
	a := testenv.Client(t, testenv.HTTPClient("ws://"+addr, "ha.example.com", upA.URL))
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "ha.example.com", upB.URL))

	seen := map[string]int{}
	for range 20 {
		code, e := request(t, http.MethodGet, addr, "ha.example.com", "/", nil)
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		seen[e.Upstream]++
	}
	if seen["a"] != 10 || seen["b"] != 10 {
		t.Fatalf("round robin over two clients: got %v, want 10 each", seen)
	}

	a.Stop()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := len(sessionsOf(a.ID())); n != 0 {
			return fmt.Errorf("client a still has %d sessions", n)
		}
		return nil
	})
	for range 10 {
		code, e := request(t, http.MethodGet, addr, "ha.example.com", "/", nil)
		if code != http.StatusOK || e.Upstream != "b" {
			t.Fatalf("after a left: got %d from %q", code, e.Upstream)
		}
	}
}

func TestWrongOrMissingTokenIsRefused(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)

	for name, header := range map[string]string{"missing": "", "wrong": "Bearer not-the-token", "not bearer": "Basic " + testenv.Token} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/connect", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "missing or wrong token") {
			t.Errorf("%s token: got %d %q", name, resp.StatusCode, body)
		}
	}

	// The real client says what is wrong and keeps trying; no session appears.
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client",
		"--url", "ws://"+addr, "--token", "wrong-token", "--id", "wrong-token-client",
		"--upstream", "app.example.com="+up.URL)
	p.WaitOutput(t, 10*time.Second, "server refused the connection (HTTP 401): inlets: missing or wrong token")
	if n := len(sessionsOf("wrong-token-client")); n != 0 {
		t.Fatalf("a client with a wrong token has %d sessions", n)
	}
	if code, _ := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusBadGateway {
		t.Fatalf("a host announced with a wrong token is served: %d", code)
	}
}

func TestHandlerWithoutTokenFailsToLoad(t *testing.T) {
	addr, c := server(t, inletsBoth)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	for name, tc := range map[string]struct{ directive, want string }{
		"no token":      {"inlets", "the inlets control plane needs a token"},
		"unset env var": {"inlets {\n\t\ttoken {env.INLETS_TEST_UNSET_VARIABLE}\n\t}", "token 1: "},
		"missing file":  {"inlets {\n\t\ttoken_file /nonexistent/inlets-token\n\t}", "reading token file"},
		"bad plane":     {"inlets both", "unknown argument"},
	} {
		err := c.Load(testenv.Caddyfile(adminPort, "", fmt.Sprintf(":%s {\n\t%s\n}", port, tc.directive)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
	// The running config was kept.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/connect", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after failed loads, the old config should still answer /connect with 401: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestUnreachableUpstreamOrNoClientIs502(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	closed := testenv.FreePort(t)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "down.example.com", fmt.Sprintf("http://127.0.0.1:%d", closed)))

	code, body := testenv.Get(t, addr, "down.example.com", "/")
	if code != http.StatusBadGateway || !strings.Contains(body, "could not reach the upstream for down.example.com") {
		t.Errorf("upstream down: got %d %q", code, body)
	}
	code, body = testenv.Get(t, addr, "nobody.example.com", "/")
	if code != http.StatusBadGateway || !strings.Contains(body, "no tunnel client is connected for nobody.example.com") {
		t.Errorf("no client: got %d %q", code, body)
	}
}

func TestPassThruHandsUnservedHostsToTheNextHandler(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tpass_thru\n\t}\n\trespond \"fallback\" 404")
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", up.URL))

	if code, body := testenv.Get(t, addr, "nobody.example.com", "/"); code != http.StatusNotFound || body != "fallback" {
		t.Errorf("unserved host: got %d %q, want the next handler's 404", code, body)
	}
	if code, e := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Errorf("served host: got %d %+v", code, e)
	}
}

func TestKilledClientProcessIsReplacedWithoutTouchingTheServer(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	args := []string{"http", "client", "--url", "ws://" + addr, "--token", testenv.Token,
		"--id", "restarted-client", "--upstream", "app.example.com=" + up.URL}
	inlets := testenv.Binary(t, "inlets")

	first := testenv.Start(t, inlets, args...)
	first.WaitOutput(t, 10*time.Second, "msg=connected")
	if code, e := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("first client: got %d %+v", code, e)
	}

	first.Kill()
	testenv.Eventually(t, 5*time.Second, func() error {
		if code, _ := testenv.Get(t, addr, "app.example.com", "/"); code != http.StatusBadGateway {
			return fmt.Errorf("killed client: got %d, want 502", code)
		}
		return nil
	})

	second := testenv.Start(t, inlets, args...)
	second.WaitOutput(t, 10*time.Second, "msg=connected")
	if code, e := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("restarted client: got %d %+v", code, e)
	}
}

func TestCaddyBinaryRunsTheClientAndStopsCleanlyOnSignal(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		p := testenv.Start(t, testenv.Binary(t, "caddy"), "inlets", "http", "client",
			"--url", "ws://"+addr, "--token", testenv.Token, "--id", "caddy-binary-client",
			"--upstream", "app.example.com="+up.URL)
		p.WaitOutput(t, 10*time.Second, "msg=connected")
		if code, e := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
			t.Fatalf("through `caddy inlets http client`: %d %+v", code, e)
		}
		p.Cmd.Process.Signal(sig)
		if err := p.Cmd.Wait(); err != nil {
			t.Fatalf("after %v: %v\n%s", sig, err, p.Output())
		}
		if !strings.Contains(p.Output(), "msg=stopped") {
			t.Fatalf("after %v the client did not say it stopped:\n%s", sig, p.Output())
		}
		testenv.Eventually(t, 5*time.Second, func() error {
			if n := len(sessionsOf("caddy-binary-client")); n != 0 {
				return fmt.Errorf("%d sessions left after the client stopped", n)
			}
			return nil
		})
	}
}

// reverse_proxy composed by hand with the inlets source and transport
// takes its own options: with least_conn and two clients, while one holds
// a download, every other request goes to the other.
func TestReverseProxyComposedWithTheInletsSourceAndTransport(t *testing.T) {
	upA, upB := newUpstream(t, "a"), newUpstream(t, "b")
	addr, _ := server(t, "inlets control {\n\t\ttoken "+testenv.Token+"\n\t}\n\treverse_proxy {\n\t\tdynamic inlets\n\t\ttransport inlets {\n\t\t\tkeepalive 30s\n\t\t}\n\t\tlb_policy least_conn\n\t}")
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", upA.URL))
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", upB.URL))

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/held?size=100000", nil)
	req.Host = "app.example.com"
	held, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	busy := held.Header.Get("X-Upstream")
	for range 6 {
		code, e := request(t, http.MethodPost, addr, "app.example.com", "/composed", strings.NewReader("body"))
		if code != http.StatusOK || e.Upstream == busy || e.Path != "/composed" || e.Host != "app.example.com" {
			t.Fatalf("least_conn with client %q busy: %d %+v, want the other client", busy, code, e)
		}
	}
	close(upA.release)
	close(upB.release)
}

// A client that goes away mid-response cuts that response only: another
// client's download in flight completes intact, and later requests are
// served by the clients still there.
func TestClientVanishingMidRequestCutsOnlyThatRequest(t *testing.T) {
	const size = 4 << 20
	upA, upB := newUpstream(t, "a"), newUpstream(t, "b")
	addr, _ := server(t, inletsBoth)
	a := testenv.Client(t, testenv.HTTPClient("ws://"+addr, "a.example.com", upA.URL))
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "b.example.com", upB.URL))

	download := func(host string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/held?size=%d", addr, size), nil)
		req.Host = host
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		// Both halves come from one deterministic stream: read the first.
		if _, err := io.CopyN(io.Discard, resp.Body, size/2); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	respA, respB := download("a.example.com"), download("b.example.com")

	a.Stop() // client a goes away with its response half sent
	if n, err := io.Copy(io.Discard, respA.Body); err == nil {
		t.Fatalf("the visitor of a got a clean end after %d more bytes of a cut response", n)
	}
	close(upB.release)
	rest, err := io.ReadAll(respB.Body)
	if err != nil || len(rest) != size-size/2 {
		t.Fatalf("b's download in flight: %d more bytes, %v; want the other %d", len(rest), err, size-size/2)
	}
	if code, e := request(t, http.MethodGet, addr, "b.example.com", "/after", nil); code != http.StatusOK || e.Upstream != "b" {
		t.Fatalf("b after a left: %d %+v", code, e)
	}
	code, body := testenv.Get(t, addr, "a.example.com", "/")
	if code != http.StatusBadGateway || !strings.Contains(body, "no tunnel client") {
		t.Fatalf("a after its client left: %d %q", code, body)
	}
}

func TestBusySiteReusesTunnelStreams(t *testing.T) {
	// Every new upstream connection at the client is a stream the server
	// opened: count them while 64 visitors' keep-alive connections send 20
	// requests each. Kept idle between requests, the streams are reused;
	// reverse_proxy's default of 32 idle connections would close about half
	// of them after each round and open new ones.
	var dials atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", up.URL))

	const visitors, requests = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, visitors)
	for range visitors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			for range requests {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
				req.Host = "app.example.com"
				resp, err := tr.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != "ok" {
					errs <- fmt.Errorf("%d %q", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := dials.Load(); n > 2*visitors {
		t.Fatalf("%d requests over %d keep-alive connections opened %d upstream connections through the tunnel; want at most %d", visitors*requests, visitors, n, 2*visitors)
	}
}
