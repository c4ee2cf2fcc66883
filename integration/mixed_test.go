package integration

import (
	"bufio"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// TestTCPMetricsAndStatusOfAServerWithBothModes runs an HTTP client and a
// TCP client on one server: the status says so, and the TCP metrics count
// connections per port, opened and still open.
func TestTCPMetricsAndStatusOfAServerWithBothModes(t *testing.T) {
	waitNoSessions(t)
	p1, p2 := testenv.FreePort(t), testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(p1, p2))
	addr := srv.URL[len("ws://"):]
	up := newUpstream(t, "web")
	echo1, echo2 := newEchoUpstream(t, "one"), newEchoUpstream(t, "two")
	testenv.Client(t, testenv.HTTPClient(srv.URL, "app.example.com", up.URL))
	tcpCfg := tcpClient(srv.URL, p1, echo1.Addr(), p2, echo2.Addr())
	tcpCfg.ID = "tcp-client"
	testenv.Client(t, tcpCfg)

	st := controlStatus(t, addr)
	if st.Info.Mode != "http,tcp" {
		t.Errorf("info.mode = %q, want http,tcp", st.Info.Mode)
	}
	var found bool
	for _, c := range st.Clients {
		if c.ClientID != "tcp-client" {
			continue
		}
		found = true
		if c.Mode != "tcp" || !reflect.DeepEqual(c.Upstreams, []string{echo1.Addr(), echo2.Addr()}) || !reflect.DeepEqual(c.Ports, []int{p1, p2}) {
			t.Errorf("TCP client in status: %+v", c)
		}
	}
	if !found {
		t.Fatalf("no tcp-client in status: %+v", st.Clients)
	}

	before := controlMetrics(t, addr)
	port1, port2 := strconv.Itoa(p1), strconv.Itoa(p2)
	total1 := before.value("tcp_dataplane_connections_total", "port", port1)
	total2 := before.value("tcp_dataplane_connections_total", "port", port2)

	// Five connections to p1 and one to p2, each established end to end
	// (the upstream's greeting came back); then three of p1's close.
	var open []net.Conn
	for i := range 6 {
		port := p1
		if i == 5 {
			port = p2
		}
		c := dialTunnel(t, port)
		greeting(t, bufio.NewReader(c))
		open = append(open, c)
	}
	for _, c := range open[:3] {
		c.Close()
	}

	testenv.Eventually(t, 5*time.Second, func() error {
		m := controlMetrics(t, addr)
		got := []float64{
			m.value("tcp_dataplane_connections_total", "port", port1) - total1,
			m.value("tcp_dataplane_connections_gauge", "port", port1),
			m.value("tcp_dataplane_connections_total", "port", port2) - total2,
			m.value("tcp_dataplane_connections_gauge", "port", port2),
			m.value("tcp_controlplane_connected_gauge"),
			m.value("http_controlplane_connected_gauge"),
		}
		if want := []float64{5, 2, 1, 1, 1, 1}; !reflect.DeepEqual(got, want) {
			return fmt.Errorf("p1 opened/open, p2 opened/open, tcp/http clients = %v, want %v", got, want)
		}
		return nil
	})
	if n := controlMetrics(t, addr).value("tcp_controlplane_requests_total", "code", "101", "path", "/connect"); n < 1 {
		t.Errorf("the TCP client's /connect is not counted under tcp_controlplane_requests_total: %v", n)
	}
}
