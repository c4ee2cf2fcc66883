package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-inlets/caddy-inlets/internal/latency"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// clientDelay is how long the relay in front of the server holds what a
// tunnel client sends: one trip over the client's link. Long enough that
// one trip and two differ by far more than any scheduling delay.
const clientDelay = 300 * time.Millisecond

// slowLink is a relay to addr that delays what tunnel clients send it by
// clientDelay; clients connect to ws://<its address>.
func slowLink(t *testing.T, addr string) string {
	t.Helper()
	r, err := latency.Start(addr, clientDelay, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return "ws://" + r.Addr()
}

// closingUpstream answers each connection's first request with a short
// HTTP response and closes it, as an upstream that keeps no connection
// alive: every visitor's request needs a new stream.
func closingUpstream(t *testing.T) string {
	t.Helper()
	return serveTCP(t, "127.0.0.1", func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
	}).Addr()
}

// firstByte is the least, over three new connections, of the time from a
// visitor's first byte to the first byte of the answer: exchange does one
// exchange on a new connection and returns how long it took to the first
// byte. The least is the measure that load cannot shrink, only grow.
func firstByte(t *testing.T, exchange func() (time.Duration, error)) time.Duration {
	t.Helper()
	least := time.Duration(1<<63 - 1)
	for range 3 {
		took, err := exchange()
		if err != nil {
			t.Fatal(err)
		}
		least = min(least, took)
	}
	return least
}

// rawExchange connects to addr, writes request and times the first byte
// of the answer.
func rawExchange(addr, request string) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		if _, err := io.WriteString(c, request); err != nil {
			return 0, err
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return 0, fmt.Errorf("reading the answer's first byte: %w", err)
		}
		return time.Since(start), nil
	}
}

// trips says how many trips over the client's link a first byte took:
// what is left after whole trips is scheduling, far under half a trip.
func trips(d time.Duration) float64 {
	return float64(d) / float64(clientDelay)
}

// A new connection's first byte costs one trip over the client's link,
// whatever the kind of tunnel: the server sends the visitor's first
// bytes behind the stream's header, without waiting for the client's
// reply. A version 2 client is served as version 2 says: two trips.
func TestANewConnectionCostsOneTripOverTheClientsLink(t *testing.T) {
	up := closingUpstream(t)
	public, public2 := testenv.FreePort(t), testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public, public2))
	link := slowLink(t, strings.TrimPrefix(srv.URL, "ws://"))
	site := strings.TrimPrefix(srv.URL, "ws://")

	slowBefore := slowRTTs(t)
	testenv.Client(t, tcpClient(link, public, up))
	httpCfg := testenv.HTTPClient(link, "trip.example.com", "http://"+up)
	testenv.Client(t, httpCfg)
	v2Client(t, link, public2, up)
	const request = "GET / HTTP/1.1\r\nHost: trip.example.com\r\n\r\n"

	tcp := firstByte(t, rawExchange(fmt.Sprintf("127.0.0.1:%d", public), request))
	http := firstByte(t, rawExchange(site, request))
	v2 := firstByte(t, rawExchange(fmt.Sprintf("127.0.0.1:%d", public2), request))
	t.Logf("first byte over a client link of %s: TCP %s (%.2f trips), HTTP %s (%.2f), TCP with a version 2 client %s (%.2f)",
		clientDelay, tcp, trips(tcp), http, trips(http), v2, trips(v2))
	for name, d := range map[string]time.Duration{"TCP": tcp, "HTTP": http} {
		if trips(d) < 1 || trips(d) > 1.5 {
			t.Errorf("%s: the first byte of a new connection took %s, %.2f trips over the client's link; want one", name, d, trips(d))
		}
	}
	if trips(v2) < 2 || trips(v2) > 2.5 {
		t.Errorf("a version 2 client's first byte took %s, %.2f trips; want the two of version 2", v2, trips(v2))
	}

	// Each session's round trip, measured as it started, is in the
	// status and on the metrics' histogram: this test's TCP sessions (the
	// client and the version 2 one) land in the bucket of 250 to 500 ms,
	// where loopback sessions of other tests never do.
	testenv.Eventually(t, 15*time.Second, func() error {
		if n := slowRTTs(t) - slowBefore; n < 2 {
			return fmt.Errorf("tcp_controlplane_session_rtt_seconds has %v observations between 250 and 500 ms, want one per TCP session over the link", n)
		}
		return nil
	})
	for _, s := range sessionsOf(httpCfg.ID) {
		if rtt := s.RTT(); rtt < clientDelay || rtt > 2*clientDelay {
			t.Errorf("the HTTP client's session measured a round trip of %s, want about %s", rtt, clientDelay)
		}
	}
}

// slowRTTs is how many round trips between 250 and 500 ms the TCP
// sessions' histogram holds.
func slowRTTs(t *testing.T) uint64 {
	t.Helper()
	f := adminMetrics(t)["tcp_controlplane_session_rtt_seconds"]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatal("no tcp_controlplane_session_rtt_seconds histogram")
	}
	var upTo250, upTo500 uint64
	for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
		switch b.GetUpperBound() {
		case 0.25:
			upTo250 = b.GetCumulativeCount()
		case 0.5:
			upTo500 = b.GetCumulativeCount()
		}
	}
	return upTo500 - upTo250
}

// A TLS connection passed through by server name: the visitor's
// ClientHello goes behind the stream's header, so the handshake takes one
// trip over the client's link.
func TestATLSPassthroughHandshakeCostsOneTripOverTheClientsLink(t *testing.T) {
	upstream := tlsUpstream(t, "a.test")
	_, shared, url := sniServer(t)
	link := slowLink(t, strings.TrimPrefix(url, "ws://"))
	p := inletsTCP(t, link, "trip-sni", "--upstream", "127.0.0.1", "--sni", fmt.Sprintf("a.test=%d", upstream))
	p.WaitOutput(t, 10*time.Second, "msg=connected")

	handshake := firstByte(t, func() (time.Duration, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		start := time.Now()
		c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(shared), &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
		if err != nil {
			return 0, err
		}
		c.Close()
		return time.Since(start), nil
	})
	t.Logf("a TLS 1.3 handshake through the tunnel over a client link of %s: %s (%.2f trips)", clientDelay, handshake, trips(handshake))
	if trips(handshake) < 1 || trips(handshake) > 1.5 {
		t.Errorf("the handshake took %s, %.2f trips over the client's link; want one", handshake, trips(handshake))
	}
}

// v2Client is a tunnel client of protocol version 2 alone, written from
// the specification with this package's pieces: it serves public on
// upstream, replying to each stream's header once it has connected.
func v2Client(t *testing.T, url string, public int, upstream string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url+tunnel.ConnectPath, map[string][]string{"Authorization": {"Bearer " + testenv.Token}})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := tunnel.ClientSession(tunnel.NewConn(ws, tunnel.ClientSide), tunnel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	hello := tunnel.Hello{ClientID: "v2-client", Version: "2", Protocol: 2, MinProtocol: 2, Mode: tunnel.ModeTCP,
		TCP: []tunnel.TCPUpstream{{Port: public, Upstream: upstream}}}
	if _, accept, err := tunnel.SendHello(context.Background(), sess, hello); err != nil || accept.Protocol != 2 {
		t.Fatalf("a version 2 hello: %+v, %v", accept, err)
	}
	go func() {
		for {
			st, err := sess.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				var h tunnel.StreamHeader
				if tunnel.ReadFrame(st, tunnel.MaxStreamHeaderSize, &h) != nil {
					st.Reset()
					return
				}
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					tunnel.Reply(st, tunnel.StreamUpstreamUnreachable, err.Error())
					return
				}
				if tunnel.Reply(st, "", "") != nil {
					up.Close()
					return
				}
				tunnel.Join(st, up, 0)
			}()
		}
	}()
}
