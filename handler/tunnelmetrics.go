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

// tenantFamilies are the metric families a tunnel may read, by what says
// whose a series is: the label, and for ports, which kind.
var tenantFamilies = map[string]owner{
	"http_dataplane_requests_total":           {label: "host"},
	"http_dataplane_request_duration_seconds": {label: "host"},
	"tcp_dataplane_connections_total":         {label: "port"},
	"tcp_dataplane_connections_gauge":         {label: "port"},
	"udp_dataplane_flows_total":               {label: "port", udp: true},
	"udp_dataplane_flows_gauge":               {label: "port", udp: true},
	"udp_dataplane_datagrams_dropped_total":   {label: "port", udp: true},
	"tls_dataplane_connections_total":         {label: "host"},
	"tls_dataplane_connections_gauge":         {label: "host"},
	"tls_ondemand_certificates_total":         {label: "tunnel"},
	"dataplane_visitors_refused_total":        {label: "tunnel"},
}

// owner is the label of a family that names what a series is about: a
// host pattern or TLS name, a TCP or UDP port, or the tunnel itself.
type owner struct {
	label string
	udp   bool
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
		o, ok := tenantFamilies[f.GetName()]
		if !ok {
			continue
		}
		var own []*dto.Metric
		for _, m := range f.Metric {
			if tg.owns(tenancy, m, o) {
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

func (tg tunnelGatherer) owns(t *registry.Tenancy, m *dto.Metric, o owner) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() != o.label {
			continue
		}
		switch o.label {
		case "port":
			port, err := strconv.Atoi(lp.GetValue())
			if err != nil {
				return false
			}
			return t.PortOwner(registry.Port{UDP: o.udp, Num: port}) == tg.tunnel
		case "tunnel":
			return lp.GetValue() == tg.tunnel
		}
		// Requests for hosts no client served are counted under no
		// host: whose they were is not known, so no tunnel sees them.
		return lp.GetValue() != metrics.NoHost && t.OwnerOfPattern(lp.GetValue()) == tg.tunnel
	}
	return false
}
