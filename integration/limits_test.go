package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// fromAddress is an HTTP client whose connections come from local, a
// loopback address other than 127.0.0.1.
func fromAddress(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func TestWrongTokensFromOneAddressAreSlowedDownAndCounted(t *testing.T) {
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t}")
	url := "http://" + addr + "/connect"
	before := controlMetrics(t, addr).value("http_controlplane_requests_total", "code", "429", "path", "/connect")

	attacker := fromAddress("127.0.0.2")
	codes := map[int]int{}
	var retryAfter string
	for range 500 {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer wrong-token")
		resp, err := attacker.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if codes[http.StatusUnauthorized] != 10 || codes[http.StatusTooManyRequests] != 490 || retryAfter == "" {
		t.Fatalf("500 wrong tokens from 127.0.0.2: %v (Retry-After %q); want 10 refused, then 429 with Retry-After", codes, retryAfter)
	}
	after := controlMetrics(t, addr).value("http_controlplane_requests_total", "code", "429", "path", "/connect")
	if after-before != 490 {
		t.Errorf("http_controlplane_requests_total{code=429,path=/connect} rose by %v, want 490", after-before)
	}

	// Meanwhile another address, with the right token, connects at once.
	up := newUpstream(t, "app")
	start := time.Now()
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "slowed.example.com", up.URL))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a right token from 127.0.0.1 took %s to connect", took)
	}
	if code, e := request(t, http.MethodGet, addr, "slowed.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("after the attack: %d %+v", code, e)
	}
}

// connectOnce runs an in-process client until it is accepted (nil) or
// refused (what it logged).
func connectOnce(t *testing.T, cfg client.Config) error {
	t.Helper()
	cfg.MaxBackoff = time.Hour
	var logged func() string
	cfg.Logger, logged = testenv.CaptureLogger()
	c := testenv.StartClient(t, cfg)
	defer c.Stop()
	var err error
	testenv.Eventually(t, 10*time.Second, func() error {
		switch out := logged(); {
		case c.Connected():
			return nil
		case strings.Contains(out, "refuses this client"), strings.Contains(out, "refused the client for now"):
			err = fmt.Errorf("%s", out)
			return nil
		}
		return fmt.Errorf("client neither connected nor refused")
	})
	return err
}

func TestEachLimitRefusesTheNextClientWithItsReason(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tmax_clients 2\n\t\tmax_hosts_per_client 2\n\t}")
	url := "ws://" + addr
	warm := testenv.Client(t, testenv.HTTPClient(url, "warm.example.com", up.URL))
	request(t, http.MethodGet, addr, "warm.example.com", "/", nil)
	warm.Stop()
	waitSessions(t, warm.ID(), 0)
	http.DefaultClient.CloseIdleConnections()
	base := testenv.SettledResources(t)

	err := connectOnce(t, testenv.HTTPClient(url, "a.example.com", up.URL, "b.example.com", up.URL, "c.example.com", up.URL))
	if err == nil || !strings.Contains(err.Error(), "the client announces 3 hosts, and this server takes at most 2 from one client (its max_hosts_per_client)") {
		t.Fatalf("three hosts: %v", err)
	}
	one := testenv.Client(t, testenv.HTTPClient(url, "one.example.com", up.URL))
	two := testenv.Client(t, testenv.HTTPClient(url, "two.example.com", up.URL))
	err = connectOnce(t, testenv.HTTPClient(url, "three.example.com", up.URL))
	if err == nil || !strings.Contains(err.Error(), "the server has 2 clients, as many as it takes (its max_clients)") {
		t.Fatalf("a third client: %v", err)
	}
	// One leaves: the next is taken.
	one.Stop()
	waitSessions(t, one.ID(), 0)
	three := testenv.Client(t, testenv.HTTPClient(url, "three.example.com", up.URL))
	if code, e := request(t, http.MethodGet, addr, "three.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("the client taken after one left: %d %+v", code, e)
	}
	// Nothing of the refused clients, nor of the others once gone,
	// remains.
	two.Stop()
	three.Stop()
	waitSessions(t, two.ID(), 0)
	waitSessions(t, three.ID(), 0)
	http.DefaultClient.CloseIdleConnections()
	testenv.ResourcesBackTo(t, base, "refused clients and the others gone")
}

func TestStreamsPerClientAreLimited(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tmax_streams_per_client 2\n\t\tlb_try_duration 200ms\n\t}")
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "streams.example.com", up.URL))

	// Two downloads held open take both streams.
	var held []*http.Response
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/held?size=1000000", nil)
		req.Host = "streams.example.com"
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("held download: %v %v", resp, err)
		}
		held = append(held, resp)
	}
	code, body := testenv.Get(t, addr, "streams.example.com", "/")
	if code != http.StatusBadGateway {
		t.Fatalf("a third request with two streams allowed: %d %q", code, body)
	}
	close(up.release)
	for _, resp := range held {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if code, _ := testenv.Get(t, addr, "streams.example.com", "/"); code != http.StatusOK {
			return fmt.Errorf("after the downloads ended: %d", code)
		}
		return nil
	})
}

// A client that writes more than its hello on the control stream, or
// closes it, breaks the protocol, at a bounded cost: the server never
// reads the control stream after the hello, so what the client writes
// there stops at the stream's first window, and the session serves on.
func TestControlStreamAbuseIsBounded(t *testing.T) {
	up := newUpstream(t, "chatty")
	addr, _ := server(t, inletsBoth)
	hello := frame(`{"clientID":"chatty","protocol":2,"mode":"http","http":[{"host":"chatty.example.com","url":"` + up.URL + `"}]}`)
	for name, abuse := range map[string]func(t *testing.T, ctrl net.Conn){
		"more than the hello": func(t *testing.T, ctrl net.Conn) {
			ctrl.SetWriteDeadline(time.Now().Add(time.Second))
			if n, err := ctrl.Write(make([]byte, 2*tunnel.MinStreamWindow)); err == nil || n > tunnel.MinStreamWindow {
				t.Fatalf("the client wrote %d bytes past its hello (%v), want at most the first window, %d", n, err, tunnel.MinStreamWindow)
			}
		},
		"closing it": func(_ *testing.T, ctrl net.Conn) { ctrl.Close() },
	} {
		t.Run(name, func(t *testing.T) {
			mux, ctrl, send := rawSession(t, addr)
			if answer := send(hello); answer.Type != tunnel.TypeAccept {
				t.Fatalf("hello: %+v", answer)
			}
			abuse(t, ctrl)
			// The session still serves: a visitor's request comes as a
			// stream, which this raw client answers.
			go func() {
				st, err := mux.AcceptStream()
				if err != nil {
					return
				}
				var h tunnel.StreamHeader
				tunnel.ReadFrame(st, tunnel.MaxStreamHeaderSize, &h)
				tunnel.WriteFrame(st, tunnel.StreamReply{})
				io.ReadAll(io.LimitReader(st, 1)) // the request has come
				io.WriteString(st, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nserving")
				st.Close()
			}()
			if code, body := testenv.Get(t, addr, "chatty.example.com", "/"); code != http.StatusOK || body != "serving" {
				t.Fatalf("after the abuse: %d %q", code, body)
			}
			mux.Close()
		})
	}
}

// A reverse_proxy dial address with a negative host index, which panicked
// in net/http's dial goroutine and killed Caddy, is an error for the
// request, and Caddy serves on.
func TestBadDialAddressIsAnErrorNotACrash(t *testing.T) {
	addr, _ := server(t, "reverse_proxy inlets-1--1:80 {\n\t\ttransport inlets\n\t\tlb_try_duration 100ms\n\t}")
	for range 3 {
		if code, _ := testenv.Get(t, addr, "any.example.com", "/"); code != http.StatusBadGateway {
			t.Fatalf("bad dial address: %d, want 502", code)
		}
	}
}

// A client that dials the control plane's WebSocket but never upgrades it
// past the HTTP request is bounded per address.
func TestConcurrentHandshakesPerAddressAreCapped(t *testing.T) {
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tmax_handshakes_per_address 3\n\t}")
	dialer := websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext}
	header := http.Header{"Authorization": {"Bearer " + testenv.Token}}
	// Three upgraded sessions that never say hello hold their handshake.
	for range 3 {
		ws, _, err := dialer.Dial("ws://"+addr+"/connect", header)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
	}
	_, resp, err := dialer.DialContext(context.Background(), "ws://"+addr+"/connect", header)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a fourth handshake from the same address: %v %v", resp, err)
	}
	// Another address is not held up.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connect", header)
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	ws.Close()
}

// A client with a valid token sending hellos the server must reject (here
// an old protocol, which retrying cannot help) is throttled per address as
// wrong tokens are: after the handler's auth_failures, 429 without the
// token being looked at, and a bounded number of log lines; the same
// tunnel's clients at other addresses keep connecting.
func TestRejectedHellosFromOneAddressAreThrottledAndLoggedSparingly(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	port := testenv.FreePort(t)
	testenv.StartCaddy(t, adminPort, "\tlog {\n\t\toutput file "+logFile+"\n\t}",
		fmt.Sprintf(":%d {\n\tinlets {\n\t\ttoken %s\n\t}\n}", port, testenv.Token))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	const hellos = 3000
	// An address of its own: the guard outlives each test's config.
	d := &websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}}).DialContext}
	codes := map[int]int{}
	start := time.Now()
	for range hellos {
		ws, resp, err := d.Dial("ws://"+addr+"/connect", http.Header{"Authorization": {"Bearer " + testenv.Token}})
		if err != nil {
			if resp == nil {
				t.Fatal(err)
			}
			codes[resp.StatusCode]++
			continue
		}
		codes[http.StatusSwitchingProtocols]++
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		mux, err := yamux.Server(tunnel.NewConn(ws, tunnel.ClientSide), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if ctrl, err := mux.AcceptStream(); err == nil {
			tunnel.WriteFrame(ctrl, tunnel.Hello{ClientID: "old", Protocol: 1, Mode: tunnel.ModeHTTP,
				HTTP: []tunnel.HTTPUpstream{{Host: "old.example.com", URL: "http://127.0.0.1:9"}}})
			var answer tunnel.Message
			ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
			tunnel.ReadFrame(ctrl, tunnel.MaxHandshakeSize, &answer)
		}
		mux.Close()
	}
	t.Logf("%d rejected hellos from 127.0.0.7 in %s: %v", hellos, time.Since(start), codes)
	if codes[http.StatusSwitchingProtocols] == 0 || codes[http.StatusSwitchingProtocols] > 20 || codes[http.StatusTooManyRequests] < hellos-20 {
		t.Fatalf("%d hellos with a valid token and an old protocol from one address: %v; want about 10 upgraded and rejected, then 429s", hellos, codes)
	}

	// The same token from another address connects at once.
	up := newUpstream(t, "app")
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "still.example.com", up.URL))
	if code, e := request(t, http.MethodGet, addr, "still.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("after the flood: %d %+v", code, e)
	}
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logged), "client rejected") + strings.Count(string(logged), "rejected hellos from one address"); n == 0 || n > 20 {
		t.Fatalf("%d log lines about the %d rejected hellos; want a few", n, hellos)
	}
}

// max_unread is the process's, and a config's only once it runs: one
// that fails to start (its site's port is taken) leaves the running
// config's in force, whatever its handler asked; the global option sets
// it for the config that loads.
func TestMaxUnreadChangesOnlyWithAConfigThatStarts(t *testing.T) {
	port := testenv.FreePort(t)
	site := fmt.Sprintf(":%d {\n\tinlets {\n\t\ttoken %s\n\t}\n}", port, testenv.Token)
	c := testenv.StartCaddy(t, adminPort, "\tinlets {\n\t\tmax_unread 16MiB\n\t}", site)
	limit := func() int64 { return registry.Current().Budget().Limit() }
	if got := limit(); got != 16<<20 {
		t.Fatalf("max_unread 16MiB in the global option: the limit is %d", got)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := testenv.Caddyfile(adminPort, "", site+fmt.Sprintf("\n127.0.0.1:%d {\n\tinlets data\n}\n", taken.Addr().(*net.TCPAddr).Port))
	bad = strings.Replace(bad, "\t\ttoken "+testenv.Token+"\n", "\t\ttoken "+testenv.Token+"\n\t\tmax_unread 8MiB\n", 1)
	if err := c.Load(bad); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("a config whose site's port is taken: %v", err)
	}
	if got := limit(); got != 16<<20 {
		t.Errorf("after a config asking for 8 MiB failed to start, the limit is %d, want the running config's 16 MiB", got)
	}

	if err := c.Load(testenv.Caddyfile(adminPort, "\tinlets {\n\t\tmax_unread 32MiB\n\t}", site)); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != 32<<20 {
		t.Errorf("after a config with max_unread 32MiB started, the limit is %d", got)
	}
}

// The global option's max_clients bounds the clients of every control
// plane together: with two sites taking clients and max_clients 1, the
// second client is refused at the other site.
func TestGlobalMaxClientsBoundsEveryControlPlaneTogether(t *testing.T) {
	waitNoSessions(t)
	up := newUpstream(t, "app")
	a, b := testenv.FreePort(t), testenv.FreePort(t)
	sites := fmt.Sprintf(":%d {\n\tinlets control {\n\t\ttoken %s\n\t}\n}\n:%d {\n\tinlets control {\n\t\ttoken %s\n\t}\n}", a, testenv.Token, b, testenv.Token)
	testenv.StartCaddy(t, adminPort, "\tinlets {\n\t\tmax_clients 1\n\t}", sites)
	testenv.Client(t, testenv.HTTPClient(fmt.Sprintf("ws://127.0.0.1:%d", a), "one.example.com", up.URL))
	err := connectOnce(t, testenv.HTTPClient(fmt.Sprintf("ws://127.0.0.1:%d", b), "two.example.com", up.URL))
	if err == nil || !strings.Contains(err.Error(), "the server has 1 clients, as many as it takes (its max_clients)") {
		t.Fatalf("a second client at the other control plane: %v", err)
	}
}
