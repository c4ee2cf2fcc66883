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

// TCPConnection is the series of one forwarded connection.
type TCPConnection struct{ open prometheus.Gauge }

// TCPConnectionOpened counts a visitor's connection to a public port that
// the TCP data plane forwards through a client: call it once the stream to
// the client is open, and Closed on what it returns exactly once when the
// forwarding has ended.
func TCPConnectionOpened(port int) TCPConnection { return opened(tcpSeriesSet, port) }

// opened counts one more forwarded connection (or UDP flow) in the series
// of k, when a client serves k.
func opened[K comparable](set *seriesSet[K, K, tcpSeries], k K) TCPConnection {
	s, ok := set.get(k, k)
	if !ok {
		return TCPConnection{}
	}
	s.total.Inc()
	s.open.Inc()
	return TCPConnection{s.open}
}

// Closed counts out a connection counted by TCPConnectionOpened.
func (c TCPConnection) Closed() {
	if c.open != nil {
		c.open.Dec()
	}
}

// PortServed starts the series of a port: the TCP data plane calls it
// when the port starts listening.
func PortServed(port int) { tcpSeriesSet.serve(port) }

// PortUnserved deletes the series of a port: the registry calls it when
// the last client announcing the port has gone.
func PortUnserved(port int) { tcpSeriesSet.unserve(port) }

type tcpSeries struct {
	open  prometheus.Gauge
	total prometheus.Counter
}

// tcpSeriesSet holds the series of the ports served.
var tcpSeriesSet = newSeriesSet(0, func(port int) tcpSeries {
	label := strconv.Itoa(port)
	return tcpSeries{open: tcpOpen.WithLabelValues(label), total: tcpTotal.WithLabelValues(label)}
}, func(port int) {
	label := strconv.Itoa(port)
	tcpOpen.DeleteLabelValues(label)
	tcpTotal.DeleteLabelValues(label)
})
