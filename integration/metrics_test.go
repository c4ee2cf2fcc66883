package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// exposition is a parsed scrape.
type exposition map[string]*dto.MetricFamily

// scrapeText GETs a metrics endpoint in Prometheus's text format.
func scrapeText(t *testing.T, url, token string) []byte {
	t.Helper()
	code, body := get(t, url, token)
	if code != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", url, code, body)
	}
	return body
}

// scrape GETs and parses a metrics endpoint.
func scrape(t *testing.T, url, token string) exposition {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(scrapeText(t, url, token)))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return families
}

// controlMetrics scrapes the control plane's /metrics with the token.
func controlMetrics(t *testing.T, addr string) exposition {
	return scrape(t, "http://"+addr+"/metrics", testenv.Token)
}

// adminMetrics scrapes the admin endpoint's /metrics.
func adminMetrics(t *testing.T) exposition {
	return scrape(t, fmt.Sprintf("http://localhost:%d/metrics", adminPort), "")
}

// value is the value of the series of name with exactly labels (given as
// name, value pairs): a counter's or gauge's value, a histogram's sample
// count; 0 when the series does not exist.
func (e exposition) value(name string, labels ...string) float64 {
	f := e[name]
	if f == nil {
		return 0
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
series:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return 0
}

// labelValues lists the values label takes in the series of name.
func (e exposition) labelValues(name, label string) []string {
	var out []string
	if f := e[name]; f != nil {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out = append(out, lp.GetValue())
				}
			}
		}
	}
	return out
}

// codeUpstream answers /code/N with status N.
func codeUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/code/"))
		if err != nil {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "%d\n", code)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// send sends n requests and checks the status each gets.
func send(t *testing.T, n int, method, addr, host, path string, want int) {
	t.Helper()
	for range n {
		req, _ := http.NewRequest(method, "http://"+addr+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s (Host %s): HTTP %d, want %d", method, path, host, resp.StatusCode, want)
		}
	}
}

func TestDataPlaneCountsRequestsByCodeMatchedHostAndMethod(t *testing.T) {
	up := codeUpstream(t)
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr,
		"red.example.com", up.URL,
		"*.red-wild.example.com", up.URL))
	before := controlMetrics(t, addr)

	send(t, 3, http.MethodGet, addr, "red.example.com", "/code/200", 200)
	send(t, 2, http.MethodPost, addr, "RED.example.com:8080", "/code/404", 404)
	send(t, 1, http.MethodDelete, addr, "red.example.com", "/code/503", 503)
	send(t, 2, "PURGE", addr, "red.example.com", "/code/204", 204)
	send(t, 4, http.MethodGet, addr, "a.red-wild.example.com", "/code/201", 201)
	send(t, 1, http.MethodPut, addr, "b.red-wild.example.com", "/code/201", 201)
	send(t, 2, http.MethodGet, addr, "nobody.red.example.com", "/", 502)

	after := controlMetrics(t, addr)
	for _, tt := range []struct {
		code, host, method string
		n                  float64
	}{
		{"200", "red.example.com", "GET", 3},
		{"404", "red.example.com", "POST", 2},
		{"503", "red.example.com", "DELETE", 1},
		{"204", "red.example.com", "OTHER", 2},
		{"201", "*.red-wild.example.com", "GET", 4},
		{"201", "*.red-wild.example.com", "PUT", 1},
		// No client announced nobody.red.example.com: counted without a host.
		{"502", "", "GET", 2},
	} {
		labels := []string{"code", tt.code, "host", tt.host, "method", tt.method}
		for _, name := range []string{"http_dataplane_requests_total", "http_dataplane_request_duration_seconds"} {
			if got := after.value(name, labels...) - before.value(name, labels...); got != tt.n {
				t.Errorf("%s%v: +%v, want +%v", name, labels, got, tt.n)
			}
		}
	}
	for _, name := range []string{"http_dataplane_requests_total", "http_dataplane_request_duration_seconds_count"} {
		for _, host := range after.labelValues(strings.TrimSuffix(name, "_count"), "host") {
			if strings.Contains(host, "nobody") || strings.HasPrefix(host, "a.") || strings.Contains(host, ":") || strings.ContainsAny(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Errorf("%s has host label %q: a visitor's Host, not an announced pattern", name, host)
			}
		}
	}

	// The admin endpoint serves the same registry.
	admin := adminMetrics(t)
	if a, c := admin.value("http_dataplane_requests_total", "code", "200", "host", "red.example.com", "method", "GET"),
		after.value("http_dataplane_requests_total", "code", "200", "host", "red.example.com", "method", "GET"); a != c {
		t.Errorf("admin /metrics says %v, the control plane %v", a, c)
	}
}

func TestUnreachableUpstreamCounts502ForItsHost(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "down.red.example.com", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))))
	labels := []string{"code", "502", "host", "down.red.example.com", "method", "GET"}
	before := controlMetrics(t, addr).value("http_dataplane_requests_total", labels...)
	send(t, 2, http.MethodGet, addr, "down.red.example.com", "/", 502)
	if got := controlMetrics(t, addr).value("http_dataplane_requests_total", labels...) - before; got != 2 {
		t.Errorf("502s from an unreachable upstream: +%v, want +2", got)
	}
}

// Websockets and server-sent events go through the recorder that notes the
// status: they must work, and be counted when they end.
func TestWebsocketsAndEventStreamsAreCounted(t *testing.T) {
	up := newUpstream(t, "ws")
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "ws.red.example.com", up.URL))
	ws101 := []string{"code", "101", "host", "ws.red.example.com", "method", "GET"}
	sse200 := []string{"code", "200", "host", "ws.red.example.com", "method", "GET"}
	before := controlMetrics(t, addr)

	ws := dialWebsocket(t, addr, "ws.red.example.com", "/ws")
	echoOnce(t, ws, "ws", "counted when closed")
	ws.Close()

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/sse", nil)
	req.Host = "ws.red.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("data: event 1\n\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "data: event 1\n\n" {
		t.Fatalf("first event: %q %v", buf, err)
	}
	up.sseNext <- struct{}{}
	up.sseNext <- struct{}{}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	testenv.Eventually(t, 10*time.Second, func() error {
		after := controlMetrics(t, addr)
		if got := after.value("http_dataplane_requests_total", ws101...) - before.value("http_dataplane_requests_total", ws101...); got != 1 {
			return fmt.Errorf("websocket: +%v requests with code 101, want +1", got)
		}
		if got := after.value("http_dataplane_requests_total", sse200...) - before.value("http_dataplane_requests_total", sse200...); got != 1 {
			return fmt.Errorf("event stream: +%v requests with code 200, want +1", got)
		}
		return nil
	})
}

func TestControlPlaneCountsFailedLoginsUnderTheClientsMode(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	before := controlMetrics(t, addr)

	// Refused: no token, a wrong token from a TCP client, a status and a
	// metrics request without a token.
	for _, tt := range []struct{ path, token, mode string }{
		{"/connect", "", ""},
		{"/connect", "wrong", tunnel.ModeTCP},
		{"/connect", "wrong", tunnel.ModeHTTP},
		{"/status", "", ""},
		{"/metrics", "wrong", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+tt.path, nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		if tt.mode != "" {
			req.Header.Set(tunnel.ModeHeader, tt.mode)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s with token %q: HTTP %d, want 401", tt.path, tt.token, resp.StatusCode)
		}
	}
	// Accepted: a client (101) and a status request.
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "login.red.example.com", up.URL))
	get(t, "http://"+addr+"/status", testenv.Token)

	after := controlMetrics(t, addr)
	for _, tt := range []struct {
		metric, code, path string
		n                  float64
	}{
		{"http_controlplane_requests_total", "401", "/connect", 2},
		{"tcp_controlplane_requests_total", "401", "/connect", 1},
		{"http_controlplane_requests_total", "401", "/status", 1},
		{"http_controlplane_requests_total", "401", "/metrics", 1},
		{"http_controlplane_requests_total", "101", "/connect", 1},
		{"http_controlplane_requests_total", "200", "/status", 1},
		// The scrape of `before` itself.
		{"http_controlplane_requests_total", "200", "/metrics", 1},
	} {
		if got := after.value(tt.metric, "code", tt.code, "path", tt.path) - before.value(tt.metric, "code", tt.code, "path", tt.path); got != tt.n {
			t.Errorf("%s{code=%s,path=%s}: +%v, want +%v", tt.metric, tt.code, tt.path, got, tt.n)
		}
	}
	for _, m := range []string{"http_controlplane_requests_total", "tcp_controlplane_requests_total"} {
		for _, path := range after.labelValues(m, "path") {
			if path != "/connect" && path != "/status" && path != "/metrics" {
				t.Errorf("%s has path label %q", m, path)
			}
		}
	}
}

func TestConnectedGaugesFollowClients(t *testing.T) {
	waitNoSessions(t)
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	gauges := func() (http, tcp float64) {
		m := adminMetrics(t)
		return m.value("http_controlplane_connected_gauge"), m.value("tcp_controlplane_connected_gauge")
	}
	if h, tc := gauges(); h != 0 || tc != 0 {
		t.Fatalf("no clients: http %v, tcp %v", h, tc)
	}
	a := testenv.Client(t, testenv.HTTPClient("ws://"+addr, "gauge.red.example.com", up.URL))
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "gauge.red.example.com", up.URL))
	if h, tc := gauges(); h != 2 || tc != 0 {
		t.Fatalf("two clients: http %v, tcp %v", h, tc)
	}
	if v := controlMetrics(t, addr).value("http_controlplane_connected_gauge"); v != 2 {
		t.Errorf("the control plane's /metrics says %v clients", v)
	}
	a.Stop()
	testenv.Eventually(t, 10*time.Second, func() error {
		if h, tc := gauges(); h != 1 || tc != 0 {
			return fmt.Errorf("after one left: http %v, tcp %v", h, tc)
		}
		return nil
	})
}

func TestMetricsSurviveReloads(t *testing.T) {
	up := codeUpstream(t)
	addr, c := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "reload.red.example.com", up.URL))
	labels := []string{"code", "200", "host", "reload.red.example.com", "method", "GET"}
	send(t, 2, http.MethodGet, addr, "reload.red.example.com", "/", 200)
	start := controlMetrics(t, addr).value("http_dataplane_requests_total", labels...)

	port := addr[strings.LastIndexByte(addr, ':')+1:]
	for i := range 3 {
		site := fmt.Sprintf(":%s {\n\theader X-Config reload-%d\n\t%s\n}", port, i, inletsBoth)
		if err := c.Load(testenv.Caddyfile(adminPort, "", site)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// Probe with a host no client serves, so that the probes do
		// not add to the series under test.
		testenv.Eventually(t, 5*time.Second, func() error {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			req.Host = "probe.invalid"
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Config"); got != fmt.Sprintf("reload-%d", i) {
				return fmt.Errorf("config %q is serving, not reload-%d", got, i)
			}
			return nil
		})
		send(t, 1, http.MethodGet, addr, "reload.red.example.com", "/", 200)
	}

	for where, m := range map[string]exposition{"control plane": controlMetrics(t, addr), "admin": adminMetrics(t)} {
		if got := m.value("http_dataplane_requests_total", labels...); got != start+3 {
			t.Errorf("%s after 3 reloads: %v requests, want %v (the count goes on)", where, got, start+3)
		}
		if got := m.value("http_controlplane_connected_gauge"); got < 1 {
			t.Errorf("%s after 3 reloads: connected gauge %v", where, got)
		}
	}
}

// Caddy's metrics directive serves the inlets metrics of the config, the
// data plane's included: requests through the tunnel are counted there.
func TestMetricsDirectiveServesTheInletsMetrics(t *testing.T) {
	up := newUpstream(t, "app")
	port, metricsPort := testenv.FreePort(t), testenv.FreePort(t)
	testenv.StartCaddy(t, adminPort, "", fmt.Sprintf(":%d {\n\t%s\n}\n:%d {\n\tmetrics\n}", port, inletsBoth, metricsPort))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	host := fmt.Sprintf("directive-%d.example.com", time.Now().UnixNano())
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, host, up.URL))
	for range 3 {
		if code, _ := request(t, http.MethodGet, addr, host, "/", nil); code != http.StatusOK {
			t.Fatalf("request: %d", code)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), "")
		if got := m.value("http_dataplane_requests_total", "code", "200", "host", host, "method", "GET"); got != 3 {
			return fmt.Errorf("the metrics directive counts %v requests for %s, want 3", got, host)
		}
		if got := m.value("http_controlplane_connected_gauge"); got < 1 {
			return fmt.Errorf("the metrics directive says %v clients connected", got)
		}
		return nil
	})
}

func TestControlPlaneMetricsNeedTheToken(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	for name, token := range map[string]string{"no token": "", "wrong token": "wrong"} {
		code, body := get(t, "http://"+addr+"/metrics", token)
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "inlets: missing or wrong token") {
			t.Errorf("/metrics with %s: HTTP %d %q", name, code, body)
		}
	}
}

// promtool's lint finds nothing in what the endpoints serve, except that
// inlets' own gauge names end in _gauge, which it flags and which existing
// dashboards depend on.
func TestPromtoolFindsOnlyTheReferenceGaugeNames(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian: apt-get install prometheus)")
	}
	up := codeUpstream(t)
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "lint.red.example.com", up.URL))
	send(t, 1, http.MethodGet, addr, "lint.red.example.com", "/", 200)
	get(t, "http://"+addr+"/connect", "")

	for where, text := range map[string][]byte{
		"control plane": scrapeText(t, "http://"+addr+"/metrics", testenv.Token),
		"admin":         scrapeText(t, fmt.Sprintf("http://localhost:%d/metrics", adminPort), ""),
	} {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(text)
		out, _ := cmd.CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" || isReferenceGaugeName(line) {
				continue
			}
			t.Errorf("promtool check metrics on the %s's /metrics: %s", where, line)
		}
	}
}

// isReferenceGaugeName reports whether a promtool finding is only that one
// of inlets' gauges has the name inlets-pro gave it.
func isReferenceGaugeName(line string) bool {
	for _, name := range []string{"http_controlplane_connected_gauge", "tcp_controlplane_connected_gauge", "tcp_dataplane_connections_gauge"} {
		if line == name+" metric name should not include type 'gauge'" {
			return true
		}
	}
	return false
}

// The series of a host go from /metrics when its last client leaves, so
// that clients announcing ever new hosts cannot grow it without bound.
func TestSeriesOfHostsWhoseClientsLeftAreGone(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	stamp := time.Now().UnixNano()
	var clients []*testenv.RunningClient
	var hosts []string
	for i := range 20 {
		host := fmt.Sprintf("gone-%d-%d.example.com", stamp, i)
		hosts = append(hosts, host)
		clients = append(clients, testenv.Client(t, testenv.HTTPClient("ws://"+addr, host, up.URL)))
		if code, _ := request(t, http.MethodGet, addr, host, "/", nil); code != http.StatusOK {
			t.Fatalf("%s: %d", host, code)
		}
	}
	if got := adminMetrics(t).labelValues("http_dataplane_requests_total", "host"); !contains(got, hosts[0]) || !contains(got, hosts[19]) {
		t.Fatalf("with their clients connected, /metrics lacks the hosts' series: %v", got)
	}
	for _, c := range clients {
		c.Stop()
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		m := adminMetrics(t)
		for _, name := range []string{"http_dataplane_requests_total", "http_dataplane_request_duration_seconds"} {
			for _, h := range m.labelValues(name, "host") {
				if strings.HasPrefix(h, fmt.Sprintf("gone-%d-", stamp)) {
					return fmt.Errorf("%s still has a series of %s after its client left", name, h)
				}
			}
		}
		return nil
	})
}
