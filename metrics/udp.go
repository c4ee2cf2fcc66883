package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	udpOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "udp_dataplane_flows_gauge",
		Help: "gauge of UDP flows (visitor addresses) open over data plane",
	}, []string{"port"})
	udpTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "udp_dataplane_flows_total",
		Help: "total count of UDP flows (visitor addresses) established over data plane",
	}, []string{"port"})
	udpDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "udp_dataplane_datagrams_dropped_total",
		Help: "total count of visitors' UDP datagrams the data plane dropped, by reason",
	}, []string{"port", "reason"})
)

// Reasons a visitor's datagram is dropped, in the reason label of
// udp_dataplane_datagrams_dropped_total.
const (
	// DropTooLarge: larger than the data plane's max_datagram_size.
	DropTooLarge = "too_large"
	// DropFlowLimit: a new visitor, on a port with udp_max_flows flows.
	DropFlowLimit = "flow_limit"
	// DropSourceLimit: a new visitor, whose source (an IPv4 address, an
	// IPv6 /64) has udp_max_flows_per_source flows on the port.
	DropSourceLimit = "source_limit"
	// DropNoClient: no client could open a stream for a new visitor.
	DropNoClient = "no_client"
	// DropQueueFull: the visitor sends faster than its client takes.
	DropQueueFull = "queue_full"
)

// UDPFlow is the series of one forwarded flow.
type UDPFlow = TCPConnection

// UDPFlowOpened counts a visitor's flow to a public UDP port, once its
// stream to a client is open; call Closed on what it returns exactly once
// when the flow has ended.
func UDPFlowOpened(port int) UDPFlow { return opened(udpSeriesSet, port) }

// UDPDatagramDropped counts one visitor's datagram to port dropped for
// reason, one of the Drop* constants.
func UDPDatagramDropped(port int, reason string) {
	if c, ok := udpDropSet.get(port, udpDropKey{port, reason}); ok {
		c.Inc()
	}
}

// UDPPortServed starts the series of a UDP port: the registry calls it
// when the first client announcing the port connects.
func UDPPortServed(port int) {
	udpSeriesSet.serve(port)
	udpDropSet.serve(port)
}

// UDPPortUnserved deletes the series of a UDP port: the registry calls it
// when the last client announcing the port has gone.
func UDPPortUnserved(port int) {
	udpSeriesSet.unserve(port)
	udpDropSet.unserve(port)
}

type udpDropKey struct {
	port   int
	reason string
}

// udpSeriesSet and udpDropSet hold the series of the UDP ports served;
// reasons are the few Drop* constants.
var (
	udpSeriesSet = newSeriesSet(0, func(port int) tcpSeries {
		label := strconv.Itoa(port)
		return tcpSeries{open: udpOpen.WithLabelValues(label), total: udpTotal.WithLabelValues(label)}
	}, func(port int) {
		label := strconv.Itoa(port)
		udpOpen.DeleteLabelValues(label)
		udpTotal.DeleteLabelValues(label)
	})
	udpDropSet = newSeriesSet(0, func(k udpDropKey) prometheus.Counter {
		return udpDropped.WithLabelValues(strconv.Itoa(k.port), k.reason)
	}, func(k udpDropKey) {
		udpDropped.DeleteLabelValues(strconv.Itoa(k.port), k.reason)
	})
)

var (
	tlsOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tls_dataplane_connections_gauge",
		Help: "gauge of TLS connections passed through by server name over data plane",
	}, []string{"host"})
	tlsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tls_dataplane_connections_total",
		Help: "total count of TLS connections passed through by server name over data plane",
	}, []string{"host"})
)

// TLSConnectionOpened counts a visitor's TLS connection passed through to
// a client that announced the TLS name pattern (never the visitor's own
// server name, which visitors choose); call Closed on what it returns
// exactly once when the forwarding has ended.
func TLSConnectionOpened(name string) TCPConnection { return opened(tlsSeriesSet, name) }

// TLSNameServed starts the series of an announced TLS name.
func TLSNameServed(name string) { tlsSeriesSet.serve(name) }

// TLSNameUnserved deletes the series of a TLS name no client serves.
func TLSNameUnserved(name string) { tlsSeriesSet.unserve(name) }

var tlsSeriesSet = newSeriesSet(NoHost, func(name string) tcpSeries {
	return tcpSeries{open: tlsOpen.WithLabelValues(name), total: tlsTotal.WithLabelValues(name)}
}, func(name string) {
	tlsOpen.DeleteLabelValues(name)
	tlsTotal.DeleteLabelValues(name)
})
