package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// inletsName matches the names of the metrics of this package as queries
// use them, histogram series included: every family's prefix, and
// dataplane_ alone for the one across transports.
var inletsName = regexp.MustCompile(`\b((http|tcp|udp|tls)_)?(controlplane|dataplane|ondemand)_[a-z_]+`)

// exported returns the names of every metric the package exports, as a
// query may name them (a histogram's _bucket, _sum and _count series),
// and the families themselves.
func exported(t *testing.T) (series map[string]bool, families []string) {
	series = map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range collectors {
		descs := make(chan *prometheus.Desc, 8)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			families = append(families, m[1])
			series[m[1]] = true
			if _, ok := c.(prometheus.Histogram); ok || strings.HasSuffix(m[1], "_seconds") {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					series[m[1]+suffix] = true
				}
			}
		}
	}
	return series, families
}

// The example dashboard and alert rules query only metrics this package
// exports, and the dashboard shows each of them: a renamed metric would
// leave a panel or an alert silently empty, and a new one unseen.
func TestExamplesQueryOnlyInletsMetrics(t *testing.T) {
	known, families := exported(t)
	if len(families) != len(collectors) {
		t.Fatalf("%d families from %d collectors", len(families), len(collectors))
	}
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
	var panels []string
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			panels = append(panels, target.Expr)
		}
	}
	alerts, err := os.ReadFile(filepath.Join("..", "examples", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	for i, expr := range append(panels, string(alerts)) {
		// "(http|tcp)_controlplane_requests_total" names two metrics.
		expr = strings.NewReplacer("(http|tcp)_", "http_ tcp_", "(http|tcp|udp)_", "http_ tcp_ udp_").Replace(expr)
		for _, name := range inletsName.FindAllString(expr, -1) {
			if !known[name] {
				t.Errorf("the examples query %s, which is not an inlets metric", name)
			}
			if i < len(panels) {
				shown[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	for _, name := range families {
		if !shown[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
}
