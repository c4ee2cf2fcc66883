package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Indexes of the per-mode control-plane collectors.
const (
	modeHTTP = iota
	modeTCP
)

var controlPlaneRequests = [2]*prometheus.CounterVec{
	modeHTTP: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_controlplane_requests_total",
		Help: "total HTTP requests processed by connecting clients on the control plane",
	}, []string{"code", "path"}),
	modeTCP: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcp_controlplane_requests_total",
		Help: "total HTTP requests processed by connecting clients on the control plane",
	}, []string{"code", "path"}),
}

// ControlPlaneRequest counts a request to the control plane that was
// answered with code. mode is what the client said it is in the
// tunnel.ModeHeader header: "tcp" counts under tcp_controlplane_requests_total,
// anything else (no header: a status or metrics request, an older client)
// under http_controlplane_requests_total. path must be one of the
// control plane's few paths, never a visitor's.
func ControlPlaneRequest(mode, path string, code int) {
	i := modeHTTP
	if mode == tunnel.ModeTCP {
		i = modeTCP
	}
	controlPlaneRequests[i].WithLabelValues(codeLabel(code), path).Inc()
}

// connectedCollector reports the connected gauges from the sessions live
// at scrape time, so they can never drift from the registry.
type connectedCollector struct {
	descs [2]*prometheus.Desc
}

var connected = &connectedCollector{descs: [2]*prometheus.Desc{
	modeHTTP: prometheus.NewDesc("http_controlplane_connected_gauge", "gauge of inlets clients connected to the control plane", nil, nil),
	modeTCP:  prometheus.NewDesc("tcp_controlplane_connected_gauge", "gauge of inlets clients connected to the control plane", nil, nil),
}}

func (c *connectedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *connectedCollector) Collect(ch chan<- prometheus.Metric) {
	var n [2]int
	if reg := registry.Current(); reg != nil {
		for _, s := range reg.Sessions() {
			switch s.Hello.Mode {
			case tunnel.ModeHTTP:
				n[modeHTTP]++
			case tunnel.ModeTCP:
				n[modeTCP]++
			}
		}
	}
	for i, d := range c.descs {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n[i]))
	}
}
