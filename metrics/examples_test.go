package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// inletsName matches the names of the metrics of this package as queries
// use them, histogram series included.
var inletsName = regexp.MustCompile(`\b(http|tcp)_(controlplane|dataplane)_[a-z_]+`)

// The example dashboard and alert rules query only metrics this package
// exports: a renamed metric would leave them silently empty.
func TestExamplesQueryOnlyInletsMetrics(t *testing.T) {
	known := map[string]bool{}
	for _, name := range []string{
		"http_controlplane_connected_gauge", "tcp_controlplane_connected_gauge",
		"http_controlplane_requests_total", "tcp_controlplane_requests_total",
		"http_dataplane_requests_total", "tcp_dataplane_connections_gauge", "tcp_dataplane_connections_total",
	} {
		known[name] = true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		for _, histogram := range []string{"http_dataplane_request_duration_seconds", "http_controlplane_session_rtt_seconds", "tcp_controlplane_session_rtt_seconds"} {
			known[histogram+suffix] = true
		}
	}
	// "(http|tcp)_controlplane_requests_total" in a regular expression.
	known["tcp)_controlplane_requests_total"] = true
	known["tcp)_controlplane_session_rtt_seconds_bucket"] = true

	dashboard, err := os.ReadFile(filepath.Join("..", "examples", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			exprs = append(exprs, target.Expr)
		}
	}
	alerts, err := os.ReadFile(filepath.Join("..", "examples", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	exprs = append(exprs, string(alerts))

	used := map[string]bool{}
	for _, expr := range exprs {
		for _, name := range inletsName.FindAllString(expr, -1) {
			if !known[name] {
				t.Errorf("the examples query %s, which is not an inlets metric", name)
			}
			used[strings.TrimSuffix(name, "_bucket")] = true
		}
	}
	// The dashboard shows every metric.
	for _, name := range []string{"http_dataplane_requests_total", "http_dataplane_request_duration_seconds",
		"tcp_dataplane_connections_gauge", "tcp_dataplane_connections_total",
		"http_controlplane_connected_gauge", "tcp_controlplane_connected_gauge", "http_controlplane_requests_total",
		"http_controlplane_session_rtt_seconds", "tcp_controlplane_session_rtt_seconds"} {
		if !used[name] {
			t.Errorf("the examples do not use %s", name)
		}
	}
}
