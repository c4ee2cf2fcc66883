package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	controlPlaneRequests[modeIndex(mode)].WithLabelValues(codeLabel(code), path).Inc()
}

// connected are the connected gauges, by mode: the registry counts
// clients in and out.
var connected = [2]prometheus.Gauge{
	modeHTTP: prometheus.NewGauge(prometheus.GaugeOpts{Name: "http_controlplane_connected_gauge", Help: "gauge of inlets clients connected to the control plane"}),
	modeTCP:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcp_controlplane_connected_gauge", Help: "gauge of inlets clients connected to the control plane"}),
}

func modeIndex(mode string) int {
	if mode == tunnel.ModeTCP {
		return modeTCP
	}
	return modeHTTP
}

// ClientConnected counts a client of mode in.
func ClientConnected(mode string) { connected[modeIndex(mode)].Inc() }

// ClientDisconnected counts a client of mode out.
func ClientDisconnected(mode string) { connected[modeIndex(mode)].Dec() }

// rttBuckets span a loopback session to a link around the world, in
// seconds.
var rttBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// sessionRTT are the round-trip times of client sessions, by mode.
var sessionRTT = [2]prometheus.Histogram{
	modeHTTP: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "http_controlplane_session_rtt_seconds",
		Help:    "round-trip times of the sessions of inlets clients, as the server measures them: a ping when a session starts and every 30s",
		Buckets: rttBuckets,
	}),
	modeTCP: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tcp_controlplane_session_rtt_seconds",
		Help:    "round-trip times of the sessions of inlets clients, as the server measures them: a ping when a session starts and every 30s",
		Buckets: rttBuckets,
	}),
}

// SessionRTT observes a round-trip time measured on the session of a
// client of mode.
func SessionRTT(mode string, rtt time.Duration) { sessionRTT[modeIndex(mode)].Observe(rtt.Seconds()) }
