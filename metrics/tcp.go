package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	tcpOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcp_dataplane_connections_gauge",
		Help: "gauge of TCP connections established over data plane",
	}, []string{"port"})
	tcpTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcp_dataplane_connections_total",
		Help: "total count of TCP connections established over data plane",
	}, []string{"port"})
)

// TCPConnectionOpened counts a visitor's connection to a public port that
// the TCP data plane forwards through a client: call it once the stream to
// the client is open, and TCPConnectionClosed(port) exactly once when the
// forwarding has ended.
func TCPConnectionOpened(port int) {
	s := tcpSeriesFor(port)
	s.total.Inc()
	s.open.Inc()
}

// TCPConnectionClosed counts out a connection counted by
// TCPConnectionOpened.
func TCPConnectionClosed(port int) {
	tcpSeriesFor(port).open.Dec()
}

type tcpSeries struct {
	open  prometheus.Gauge
	total prometheus.Counter
}

// tcpSeriesFor finds the series of a port.
var tcpSeriesFor = newSeriesCache(func(port int) tcpSeries {
	label := strconv.Itoa(port)
	return tcpSeries{open: tcpOpen.WithLabelValues(label), total: tcpTotal.WithLabelValues(label)}
})
