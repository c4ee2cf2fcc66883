package handler

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
)

// tunnelMetrics serves /metrics to a named tunnel's token: the data-plane
// series of the hosts and ports that tunnel owns, and nothing else (no
// other tenant's traffic, nothing of the process).
func (h *Handler) tunnelMetrics(name string) http.Handler {
	return promhttp.HandlerFor(tunnelGatherer{g: h.gatherer, reg: h.reg, tunnel: name}, promhttp.HandlerOpts{
		ErrorLog:          promLogger{h.logger},
		EnableOpenMetrics: true,
	})
}

// tenantFamilies are the metric families a tunnel may read, by the label
// that says whose a series is.
var tenantFamilies = map[string]string{
	"http_dataplane_requests_total":           "host",
	"http_dataplane_request_duration_seconds": "host",
	"tcp_dataplane_connections_total":         "port",
	"tcp_dataplane_connections_gauge":         "port",
}

type tunnelGatherer struct {
	g      prometheus.Gatherer
	reg    *registry.Registry
	tunnel string
}

func (tg tunnelGatherer) Gather() ([]*dto.MetricFamily, error) {
	families, err := tg.g.Gather()
	tenancy := tg.reg.Tenancy()
	var out []*dto.MetricFamily
	for _, f := range families {
		label, ok := tenantFamilies[f.GetName()]
		if !ok {
			continue
		}
		var own []*dto.Metric
		for _, m := range f.Metric {
			if tg.owns(tenancy, m, label) {
				own = append(own, m)
			}
		}
		if len(own) > 0 {
			f.Metric = own
			out = append(out, f)
		}
	}
	return out, err
}

func (tg tunnelGatherer) owns(t *registry.Tenancy, m *dto.Metric, label string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() != label {
			continue
		}
		if label == "port" {
			port, err := strconv.Atoi(lp.GetValue())
			return err == nil && t.PortOwner(port) == tg.tunnel
		}
		// Requests for hosts no client served are counted under no
		// host: whose they were is not known, so no tunnel sees them.
		return lp.GetValue() != metrics.NoHost && t.OwnerOfPattern(lp.GetValue()) == tg.tunnel
	}
	return false
}
