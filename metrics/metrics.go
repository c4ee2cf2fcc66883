// Package metrics holds the Prometheus metrics of caddy-inlets, with the
// names, types and labels of inlets-pro's, so that existing dashboards and
// alerts work unchanged:
//
//	http_controlplane_connected_gauge        gauge      HTTP clients connected now
//	tcp_controlplane_connected_gauge         gauge      TCP clients connected now
//	http_controlplane_requests_total         counter    code, path: requests to the control plane
//	tcp_controlplane_requests_total          counter    code, path: the same, from TCP clients
//	http_controlplane_session_rtt_seconds    histogram  round-trip times of HTTP clients' sessions
//	tcp_controlplane_session_rtt_seconds     histogram  the same, of TCP clients
//	http_dataplane_requests_total            counter    code, host, method
//	http_dataplane_request_duration_seconds  histogram  code, host, method
//	tcp_dataplane_connections_gauge          gauge      port: TCP connections open now
//	tcp_dataplane_connections_total          counter    port: TCP connections forwarded
//	udp_dataplane_flows_gauge                gauge      port: UDP flows open now
//	udp_dataplane_flows_total                counter    port: UDP flows forwarded
//	udp_dataplane_datagrams_dropped_total    counter    port, reason: datagrams dropped
//	tls_dataplane_connections_gauge          gauge      host: TLS passthrough connections open now
//	tls_dataplane_connections_total          counter    host: TLS passthrough connections forwarded
//	tls_ondemand_certificates_total          counter    tunnel, result: on-demand TLS's certificate questions
//	dataplane_visitors_refused_total         counter    tunnel, transport, reason: visitors a tunnel's policy refused
//
// The udp_ and tls_ metrics, the session_rtt ones and the visitors one
// are caddy-inlets' own (inlets-pro has none of them), named in the style of the others;
// host is the announced TLS name. Each session's round-trip time is
// observed once per measurement: as it starts, and every 30s after.
//
// The collectors are package-level, so their values outlive config
// reloads: Caddy gives each config a new registry, and the inlets app
// calls Register on it when it is provisioned. The session registry
// counts clients in and out of the connected gauges, and says which hosts
// and ports are served: the series of a host or port that no client
// serves any more are deleted.
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// collectors are every collector of the package, in the order above.
var collectors = []prometheus.Collector{
	connected[modeHTTP],
	connected[modeTCP],
	controlPlaneRequests[modeHTTP],
	controlPlaneRequests[modeTCP],
	sessionRTT[modeHTTP],
	sessionRTT[modeTCP],
	httpRequests,
	httpDurations,
	tcpOpen,
	tcpTotal,
	udpOpen,
	udpTotal,
	udpDropped,
	tlsOpen,
	tlsTotal,
	onDemand,
	visitorsRefused,
}

// Register adds the inlets metrics to reg, normally a config's
// ctx.GetMetricsRegistry(). Registering them again on the same registry
// is harmless; a different collector with the same names is an error.
func Register(reg prometheus.Registerer) error {
	for _, c := range collectors {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) && already.ExistingCollector == c {
			continue
		}
		if err != nil {
			return fmt.Errorf("registering the inlets metrics: %w (does another module export metrics with the names of inlets'?)", err)
		}
	}
	return nil
}
