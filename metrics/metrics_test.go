package metrics

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// sample finds the metric of family name whose labels include labels, in
// what reg gathers; nil when there is none.
func sample(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			return m
		}
	}
	return nil
}

// value is a counter's or gauge's value, or a histogram's sample count;
// 0 when the series does not exist yet.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	m := sample(t, reg, name, labels)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatalf("%s: unexpected metric type", name)
	return 0
}

// newRegistry is what Caddy gives each config.
func newRegistry(t *testing.T) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestRegisterOnEveryNewRegistryKeepsTheValues(t *testing.T) {
	first := newRegistry(t)
	labels := map[string]string{"code": "200", "host": "reload.example.com", "method": "GET"}
	HostServed("reload.example.com")
	before := value(t, first, "http_dataplane_requests_total", labels)
	HTTPRequest(200, "reload.example.com", "GET", time.Millisecond)
	if got := value(t, first, "http_dataplane_requests_total", labels); got != before+1 {
		t.Fatalf("first registry: %v, want %v", got, before+1)
	}
	// Registering again on the same registry (two apps in one config, say)
	// is harmless.
	if err := Register(first); err != nil {
		t.Fatalf("registering twice on one registry: %v", err)
	}
	// A reload: a new registry, the same collectors.
	second := newRegistry(t)
	HTTPRequest(200, "reload.example.com", "GET", time.Millisecond)
	if got := value(t, second, "http_dataplane_requests_total", labels); got != before+2 {
		t.Fatalf("after a reload: %v, want %v (the count carries over)", got, before+2)
	}
}

func TestRegisterRefusesAnotherCollectorWithTheSameName(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "tcp_dataplane_connections_total", Help: "impostor"}))
	err := Register(reg)
	if err == nil || !strings.Contains(err.Error(), "registering the inlets metrics") {
		t.Fatalf("got %v, want an error about the inlets metrics", err)
	}
}

func TestEveryMetricHasItsReferenceNameTypeAndLabels(t *testing.T) {
	reg := newRegistry(t)
	// Make one series of each vector exist.
	HostServed("names.example.com")
	HTTPRequest(200, "names.example.com", "GET", time.Millisecond)
	ControlPlaneRequest("http", "/connect", 101)
	ControlPlaneRequest("tcp", "/connect", 101)
	PortServed(65001)
	TCPConnectionOpened(65001).Closed()

	want := map[string]struct {
		typ    dto.MetricType
		labels string
	}{
		"http_controlplane_connected_gauge":       {dto.MetricType_GAUGE, ""},
		"tcp_controlplane_connected_gauge":        {dto.MetricType_GAUGE, ""},
		"http_controlplane_requests_total":        {dto.MetricType_COUNTER, "code,path"},
		"tcp_controlplane_requests_total":         {dto.MetricType_COUNTER, "code,path"},
		"http_dataplane_requests_total":           {dto.MetricType_COUNTER, "code,host,method"},
		"http_dataplane_request_duration_seconds": {dto.MetricType_HISTOGRAM, "code,host,method"},
		"tcp_dataplane_connections_gauge":         {dto.MetricType_GAUGE, "port"},
		"tcp_dataplane_connections_total":         {dto.MetricType_COUNTER, "port"},
		// caddy-inlets' own, no labels: one series each from the start.
		"http_controlplane_session_rtt_seconds": {dto.MetricType_HISTOGRAM, ""},
		"tcp_controlplane_session_rtt_seconds":  {dto.MetricType_HISTOGRAM, ""},
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		w, ok := want[f.GetName()]
		if !ok {
			t.Errorf("unexpected metric %s", f.GetName())
			continue
		}
		delete(want, f.GetName())
		var names []string
		for _, lp := range f.GetMetric()[0].GetLabel() {
			names = append(names, lp.GetName())
		}
		if f.GetType() != w.typ || strings.Join(names, ",") != w.labels {
			t.Errorf("%s: %s with labels %v, want %s with %s", f.GetName(), f.GetType(), names, w.typ, w.labels)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", f.GetName())
		}
	}
	for name := range want {
		t.Errorf("metric %s is missing", name)
	}
}

func TestHTTPRequestsAreCountedByCodeHostAndFoldedMethod(t *testing.T) {
	reg := newRegistry(t)
	// A host of its own, so that -count=N starts from zero each time.
	host := fmt.Sprintf("red-%d.example.com", time.Now().UnixNano())
	HostServed(host)
	for range 3 {
		HTTPRequest(200, host, http.MethodGet, 20*time.Millisecond)
	}
	HTTPRequest(404, host, http.MethodPost, 2*time.Second)
	HTTPRequest(200, host, "PURGE", time.Millisecond)
	HTTPRequest(200, host, "get", time.Millisecond) // methods are case-sensitive
	HTTPRequest(502, NoHost, http.MethodGet, time.Millisecond)

	for _, tt := range []struct {
		code, host, method string
		want               float64
	}{
		{"200", host, "GET", 3},
		{"404", host, "POST", 1},
		{"200", host, "OTHER", 2},
		{"502", "", "GET", 1},
	} {
		labels := map[string]string{"code": tt.code, "host": tt.host, "method": tt.method}
		if got := value(t, reg, "http_dataplane_requests_total", labels); got < tt.want {
			t.Errorf("requests %v: %v, want %v", labels, got, tt.want)
		}
		if tt.host != host {
			continue // other tests may add to the empty host's series
		}
		if got := value(t, reg, "http_dataplane_requests_total", labels); got != tt.want {
			t.Errorf("requests %v: %v, want %v", labels, got, tt.want)
		}
		if got := value(t, reg, "http_dataplane_request_duration_seconds", labels); got != tt.want {
			t.Errorf("duration samples %v: %v, want %v", labels, got, tt.want)
		}
	}
	h := sample(t, reg, "http_dataplane_request_duration_seconds", map[string]string{"code": "404", "host": host}).Histogram
	if h.GetSampleSum() != 2 {
		t.Errorf("duration sum of the 404: %v, want 2", h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		if want := uint64(0); b.GetUpperBound() >= 2 {
			want = 1
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		} else if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

func TestFoldMethod(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"} {
		if got := foldMethod(m); got != m {
			t.Errorf("foldMethod(%q) = %q", m, got)
		}
	}
	for _, m := range []string{"PURGE", "PROPFIND", "get", "", strings.Repeat("X", 1000)} {
		if got := foldMethod(m); got != "OTHER" {
			t.Errorf("foldMethod(%q) = %q, want OTHER", m, got)
		}
	}
}

func TestHTTPRequestDoesNotAllocateOnceItsSeriesExists(t *testing.T) {
	HostServed("alloc.example.com")
	HTTPRequest(200, "alloc.example.com", http.MethodGet, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() {
		HTTPRequest(200, "alloc.example.com", http.MethodGet, time.Millisecond)
	}); n != 0 {
		t.Errorf("HTTPRequest allocates %v times per call", n)
	}
}

func TestControlPlaneRequestsAreCountedUnderTheClientsMode(t *testing.T) {
	reg := newRegistry(t)
	before := func(metric, code, path string) float64 {
		return value(t, reg, metric, map[string]string{"code": code, "path": path})
	}
	http401 := before("http_controlplane_requests_total", "401", "/connect")
	tcp401 := before("tcp_controlplane_requests_total", "401", "/connect")
	status200 := before("http_controlplane_requests_total", "200", "/status")

	ControlPlaneRequest("", "/connect", 401)
	ControlPlaneRequest("http", "/connect", 401)
	ControlPlaneRequest("bogus", "/connect", 401)
	ControlPlaneRequest("tcp", "/connect", 401)
	ControlPlaneRequest("", "/status", 200)

	if got := before("http_controlplane_requests_total", "401", "/connect") - http401; got != 3 {
		t.Errorf("http 401s on /connect: +%v, want +3 (no mode, http, and an unknown mode)", got)
	}
	if got := before("tcp_controlplane_requests_total", "401", "/connect") - tcp401; got != 1 {
		t.Errorf("tcp 401s on /connect: +%v, want +1", got)
	}
	if got := before("http_controlplane_requests_total", "200", "/status") - status200; got != 1 {
		t.Errorf("200s on /status: +%v, want +1", got)
	}
}

func TestTCPConnectionsOpenedAndStillOpenPerPort(t *testing.T) {
	reg := newRegistry(t)
	values := func(port string) (total, open float64) {
		labels := map[string]string{"port": port}
		return value(t, reg, "tcp_dataplane_connections_total", labels), value(t, reg, "tcp_dataplane_connections_gauge", labels)
	}
	PortServed(2222)
	PortServed(8000)
	total2222, open2222 := values("2222")
	total8000, open8000 := values("8000")
	// K=5 connections on 2222, of which M=2 stay open; 3 on 8000, all closed.
	var conns []TCPConnection
	for range 5 {
		conns = append(conns, TCPConnectionOpened(2222))
	}
	for _, c := range conns[:3] {
		c.Closed()
	}
	for range 3 {
		TCPConnectionOpened(8000).Closed()
	}
	for _, tt := range []struct {
		port        string
		total, open float64
	}{{"2222", total2222 + 5, open2222 + 2}, {"8000", total8000 + 3, open8000}} {
		total, open := values(tt.port)
		if total != tt.total {
			t.Errorf("port %s: %v connections in all, want %v", tt.port, total, tt.total)
		}
		if open != tt.open {
			t.Errorf("port %s: %v connections open, want %v", tt.port, open, tt.open)
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		TCPConnectionOpened(2222).Closed()
	}); n != 0 {
		t.Errorf("a TCP connection allocates %v times in the metrics", n)
	}
}

func TestSeriesOfAHostOrPortNoClientServesAreDeleted(t *testing.T) {
	reg := newRegistry(t)
	host := fmt.Sprintf("gone-%d.example.com", time.Now().UnixNano())
	labels := map[string]string{"host": host}
	HTTPRequest(200, host, http.MethodGet, time.Millisecond)
	if sample(t, reg, "http_dataplane_requests_total", labels) != nil {
		t.Fatal("a request for a host no client announced made a series")
	}
	HostServed(host)
	HTTPRequest(200, host, http.MethodGet, time.Millisecond)
	HTTPRequest(404, host, http.MethodPost, time.Millisecond)
	if got := value(t, reg, "http_dataplane_requests_total", map[string]string{"host": host, "code": "404"}); got != 1 {
		t.Fatalf("served host: %v requests, want 1", got)
	}
	HostUnserved(host)
	for _, name := range []string{"http_dataplane_requests_total", "http_dataplane_request_duration_seconds"} {
		if m := sample(t, reg, name, labels); m != nil {
			t.Errorf("%s still has a series of %s after its last client left: %v", name, host, m)
		}
	}
	// A request that ends after its client left makes no series again.
	HTTPRequest(200, host, http.MethodGet, time.Millisecond)
	if sample(t, reg, "http_dataplane_requests_total", labels) != nil {
		t.Error("a late request brought the series back")
	}

	PortServed(65002)
	c := TCPConnectionOpened(65002)
	PortUnserved(65002)
	c.Closed() // after its series went: harmless
	if m := sample(t, reg, "tcp_dataplane_connections_total", map[string]string{"port": "65002"}); m != nil {
		t.Errorf("port 65002 still has a series: %v", m)
	}
}

func TestConnectedGaugesAreZeroWithoutSessions(t *testing.T) {
	reg := newRegistry(t)
	for _, name := range []string{"http_controlplane_connected_gauge", "tcp_controlplane_connected_gauge"} {
		m := sample(t, reg, name, nil)
		if m == nil || m.Gauge.GetValue() != 0 {
			t.Errorf("%s: %v, want 0", name, m)
		}
	}
}

// promtool's lint finds nothing in the exposition of every inlets metric,
// except that three gauges keep the names inlets-pro gave them, which end
// in _gauge.
func TestPromtoolFindsOnlyTheReferenceGaugeNames(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian: apt-get install prometheus)")
	}
	reg := newRegistry(t)
	HostServed("lint.example.com")
	HTTPRequest(200, "lint.example.com", http.MethodGet, time.Millisecond)
	ControlPlaneRequest("http", "/connect", 401)
	ControlPlaneRequest("tcp", "/connect", 101)
	PortServed(2222)
	TCPConnectionOpened(2222).Closed()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &text
	out, _ := cmd.CombinedOutput()
	allowed := map[string]bool{}
	for _, name := range []string{"http_controlplane_connected_gauge", "tcp_controlplane_connected_gauge", "tcp_dataplane_connections_gauge"} {
		allowed[name+" metric name should not include type 'gauge'"] = true
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if allowed[line] {
			seen++
		} else if line != "" {
			t.Errorf("promtool check metrics: %s", line)
		}
	}
	if seen != len(allowed) {
		t.Errorf("promtool did not lint the three gauges (did it run?): %s", out)
	}
}
