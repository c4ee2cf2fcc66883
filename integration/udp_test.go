package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/layer4/l4ports"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// dnsServer is a real dnsmasq answering the A records of a hosts file.
type dnsServer struct {
	port  int
	names map[string]string // name -> address
}

// startDnsmasq runs Debian's dnsmasq on 127.0.0.1 as a private network's
// resolver: it answers only the names of its hosts file, and forwards
// nothing.
func startDnsmasq(t *testing.T, n int) *dnsServer {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skipf("dnsmasq not installed: apt-get install dnsmasq-base (CI does, see .ci/run)")
	}
	needDig(t)
	d := &dnsServer{port: testenv.FreePort(t), names: map[string]string{}}
	var hosts strings.Builder
	for i := range n {
		name, addr := fmt.Sprintf("host-%d.example.lan", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
		d.names[name] = addr
		fmt.Fprintf(&hosts, "%s %s\n", addr, name)
	}
	file := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(file, []byte(hosts.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=", "--port=" + strconv.Itoa(d.port),
		"--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts", "--addn-hosts=" + file, "--log-facility=-"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	testenv.Start(t, bin, args...)
	testenv.Eventually(t, 10*time.Second, func() error {
		got, err := dig(d.port, 0, "host-0.example.lan")
		if err != nil || len(got) != 1 || got[0] != d.names["host-0.example.lan"] {
			return fmt.Errorf("dnsmasq does not answer yet: %q, %v", got, err)
		}
		return nil
	})
	return d
}

func needDig(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skipf("dig not installed: apt-get install bind9-dnsutils (CI does, see .ci/run)")
	}
}

// dig asks 127.0.0.1:port for the A records of names, one query each, in
// one dig process; from source port src unless it is 0. It returns the
// answers (+short), one line per query.
func dig(port, src int, names ...string) ([]string, error) {
	args := []string{"@127.0.0.1", "-p", strconv.Itoa(port), "+short", "+tries=1", "+time=5"}
	if src != 0 {
		args = append(args, "-b", "127.0.0.1#"+strconv.Itoa(src))
	}
	for _, name := range names {
		args = append(args, name, "A")
	}
	out, err := exec.Command("dig", args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("dig: %v: %s", err, out)
	}
	return strings.Fields(string(out)), nil
}

// udpClient is a client config serving UDP ports from upstreams given in
// pairs: public port, "host:port".
func udpClient(url string, pairs ...any) client.Config {
	cfg := client.Config{URL: url}
	for i := 0; i+1 < len(pairs); i += 2 {
		cfg.UDP = append(cfg.UDP, tunnel.UDPUpstream{Port: pairs[i].(int), Upstream: pairs[i+1].(string)})
	}
	return cfg
}

func TestDNSQueriesThroughAUDPTunnelAreAllAnsweredAndFlowsExpire(t *testing.T) {
	const (
		sources = 50
		perDig  = 20 // 1,000 queries in all
		idle    = 2 * time.Second
	)
	dns := startDnsmasq(t, perDig)
	public := testenv.FreePort(t)
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(public), "udp_idle_timeout "+idle.String())
	base := testenv.SettledResources(t)

	// The real inlets binary, with UDP ports only, as a user runs it.
	p := inletsTCP(t, srv.URL, "dns-client", "--upstream", "127.0.0.1", "--udp-ports", fmt.Sprintf("%d:%d", public, dns.port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")

	names := make([]string, 0, perDig)
	for name := range dns.names {
		names = append(names, name)
	}
	srcPorts := make([]int, sources)
	for i := range srcPorts {
		srcPorts[i] = testenv.FreePort(t)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		answered int
		lastSent time.Time
	)
	sem := make(chan struct{}, 8)
	for _, src := range srcPorts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			mu.Lock()
			lastSent = time.Now()
			mu.Unlock()
			got, err := dig(public, src, names...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || len(got) != len(names) {
				failures = append(failures, fmt.Sprintf("from port %d: %d answers to %d queries (%v): %q", src, len(got), len(names), err, got))
				return
			}
			for i, name := range names {
				if got[i] != dns.names[name] {
					failures = append(failures, fmt.Sprintf("from port %d: %s answered %s, want %s", src, name, got[i], dns.names[name]))
					continue
				}
				answered++
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d queries answered right; first failures: %s", answered, sources*perDig, strings.Join(failures[:min(5, len(failures))], "; "))
	}
	if answered != sources*perDig {
		t.Fatalf("%d answers, want %d", answered, sources*perDig)
	}

	// Every source port was a flow of its own; each ends once idle, not
	// before (no flow's last datagram came before the last dig started).
	m := adminMetrics(t)
	if flows := m.value("udp_dataplane_flows_total", "port", strconv.Itoa(public)); flows < sources {
		t.Fatalf("udp_dataplane_flows_total = %v, want at least one flow per source port (%d)", flows, sources)
	}
	testenv.Eventually(t, 10*idle, func() error {
		if g := adminMetrics(t).value("udp_dataplane_flows_gauge", "port", strconv.Itoa(public)); g != 0 {
			return fmt.Errorf("udp_dataplane_flows_gauge = %v", g)
		}
		return nil
	})
	mu.Lock()
	if since := time.Since(lastSent); since < idle {
		t.Errorf("the flows ended %s after the last dig started, before their idle timeout of %s", since, idle)
	}
	mu.Unlock()

	// The flows' streams and goroutines are gone with them; so is all of
	// the client's once it stops.
	p.Kill()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := len(sessionsOf("dns-client")); n != 0 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
	testenv.ResourcesBackTo(t, base, "1,000 DNS queries from 50 ports and their flows ended")
}

// udpEcho is a UDP upstream that sends every datagram back, except "who",
// which it answers with its name.
func udpEcho(t *testing.T, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			reply := buf[:n]
			if string(reply) == "who" {
				reply = []byte(name)
			}
			pc.WriteTo(reply, from)
		}
	}()
	return pc.LocalAddr().String()
}

// exchange sends a datagram to the public UDP port and returns the answer.
func exchange(t *testing.T, c *net.UDPConn, p []byte) []byte {
	t.Helper()
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to a %d-byte datagram: %v", len(p), err)
	}
	return buf[:n]
}

func dialUDP(t *testing.T, port int) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestJumboDatagramArrivesWholeAndOneOverTheLimitIsDroppedAndCounted(t *testing.T) {
	public := testenv.FreePort(t)
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(public))
	testenv.Client(t, udpClient(srv.URL, public, udpEcho(t, "echo")))
	c := dialUDP(t, public)

	jumbo := make([]byte, 9000)
	rand.Read(jumbo)
	if got := exchange(t, c, jumbo); !bytes.Equal(got, jumbo) {
		t.Fatalf("a 9,000-byte datagram came back as %d bytes, not the same", len(got))
	}

	// Over max_datagram_size (9216 by default): dropped and counted, and
	// the next datagram is answered, not the big one.
	if _, err := c.Write(make([]byte, l4ports.DefaultMaxDatagramSize+1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := adminMetrics(t).value("udp_dataplane_datagrams_dropped_total", "port", strconv.Itoa(public), "reason", "too_large"); n != 1 {
			return fmt.Errorf("udp_dataplane_datagrams_dropped_total{reason=too_large} = %v, want 1", n)
		}
		return nil
	})
	if got := exchange(t, c, []byte("small")); string(got) != "small" {
		t.Fatalf("after the dropped datagram, got %d bytes back", len(got))
	}
}

func TestAUDPFlowKeepsItsClientAndNewFlowsShareThem(t *testing.T) {
	public := testenv.FreePort(t)
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(public))
	testenv.Client(t, udpClient(srv.URL, public, udpEcho(t, "a")))
	testenv.Client(t, udpClient(srv.URL, public, udpEcho(t, "b")))

	seen := map[string]int{}
	for range 4 {
		c := dialUDP(t, public)
		first := string(exchange(t, c, []byte("who")))
		for range 10 {
			if got := string(exchange(t, c, []byte("who"))); got != first {
				t.Fatalf("one visitor's flow went to %s, then to %s", first, got)
			}
		}
		seen[first]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("4 flows went %v, want 2 to each client (round robin)", seen)
	}
}

func TestDisallowedUDPPortIsRefusedAndAReloadWithdrawsOne(t *testing.T) {
	allowed, disallowed, tcpPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	up := udpEcho(t, "echo")
	_, upPort, _ := net.SplitHostPort(up)
	tcpUp := newEchoUpstream(t, "tcp")
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(allowed), allowPorts(tcpPort))

	p := inletsTCP(t, srv.URL, "udp-refused", "--upstream", "127.0.0.1",
		"--udp-ports", fmt.Sprintf("%d:%s,%d:%s", allowed, upPort, disallowed, upPort))
	p.WaitOutput(t, 10*time.Second, fmt.Sprintf("server rejected the tunnel: UDP port %d is not in the server's allowed UDP ports %d", disallowed, allowed))
	p.Kill()

	// TCP and UDP ports in one client, as inlets-pro allows.
	p = inletsTCP(t, srv.URL, "udp-withdrawn", "--upstream", "127.0.0.1",
		"--ports", fmt.Sprintf("%d:%d", tcpPort, tcpUp.port), "--udp-ports", fmt.Sprintf("%d:%s", allowed, upPort))
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	if got := exchange(t, dialUDP(t, allowed), []byte("who")); string(got) != "echo" {
		t.Fatalf("UDP port before the reload answered %q", got)
	}
	if got := whoServes(t, tcpPort); got != "tcp" {
		t.Fatalf("TCP port of the same client reached %q", got)
	}

	srv.reload(t, tcpGlobals(allowPorts(tcpPort)))
	p.WaitOutput(t, 10*time.Second, fmt.Sprintf(`msg="server stopped serving ports" udp_ports=[%d] reason="the server's allowed UDP ports are now "`, allowed))
	testenv.Eventually(t, 5*time.Second, func() error {
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", allowed))
		if err != nil {
			return fmt.Errorf("UDP port %d still held after the reload: %v", allowed, err)
		}
		pc.Close()
		return nil
	})
	if got := whoServes(t, tcpPort); got != "tcp" {
		t.Fatalf("after the UDP port's withdrawal, the TCP port reached %q", got)
	}
}

func TestATunnelsUDPPortsAreItsOwn(t *testing.T) {
	public := testenv.FreePort(t)
	up := udpEcho(t, "dns-of-acme")
	const acmeToken = "acme-udp-token-0123456789"
	port := testenv.FreePort(t)
	site := fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	globals := fmt.Sprintf("\tinlets {\n\t\ttunnel acme {\n\t\t\ttoken %s\n\t\t\tudp_ports %d\n\t\t}\n\t\ttcp {\n\t\t\tbind 127.0.0.1\n\t\t}\n\t}", acmeToken, public)
	testenv.StartCaddy(t, adminPort, globals, site)
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)

	// The server's own token cannot take the tunnel's port.
	p := inletsTCP(t, url, "not-acme", "--upstream", "127.0.0.1", "--udp-ports", strconv.Itoa(public))
	p.WaitOutput(t, 10*time.Second, fmt.Sprintf("UDP port %d belongs to a tunnel of its own on this server", public))
	p.Kill()

	cfg := udpClient(url, public, up)
	cfg.Token = acmeToken
	testenv.Client(t, cfg)
	if got := exchange(t, dialUDP(t, public), []byte("who")); string(got) != "dns-of-acme" {
		t.Fatalf("the tunnel's UDP port answered %q", got)
	}
	// The tunnel's token reads its UDP port's series in /metrics; the
	// server's token's view has them too, the tunnel's nothing else.
	testenv.Eventually(t, 5*time.Second, func() error {
		m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), acmeToken)
		if n := m.value("udp_dataplane_flows_total", "port", strconv.Itoa(public)); n != 1 {
			return fmt.Errorf("acme's /metrics: udp_dataplane_flows_total{port=%d} = %v, want 1", public, n)
		}
		for name := range m {
			if !strings.HasPrefix(name, "udp_dataplane_") {
				return fmt.Errorf("acme's /metrics has %s, which is not of its UDP port", name)
			}
		}
		return nil
	})
}

func TestUDPMaxFlowsTurnsNewVisitorsAwayAndCountsThem(t *testing.T) {
	const idle = time.Second
	public := testenv.FreePort(t)
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(public), "udp_max_flows 2", "udp_idle_timeout "+idle.String())
	testenv.Client(t, udpClient(srv.URL, public, udpEcho(t, "echo")))

	a, b, c := dialUDP(t, public), dialUDP(t, public), dialUDP(t, public)
	for _, v := range []*net.UDPConn{a, b} {
		if got := exchange(t, v, []byte("who")); string(got) != "echo" {
			t.Fatalf("one of the first two visitors got %q", got)
		}
	}
	// A third visitor address, while two flows are open: dropped, counted.
	if _, err := c.Write([]byte("who")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := adminMetrics(t).value("udp_dataplane_datagrams_dropped_total", "port", strconv.Itoa(public), "reason", "flow_limit"); n < 1 {
			return fmt.Errorf("udp_dataplane_datagrams_dropped_total{reason=flow_limit} = %v", n)
		}
		return nil
	})
	// The flows already open are kept, and room comes back once they are
	// idle: the third visitor is then served.
	if got := exchange(t, a, []byte("who")); string(got) != "echo" {
		t.Fatalf("an open flow was cut for a new visitor: %q", got)
	}
	// A flow leaves the port's table before its gauge goes down.
	testenv.Eventually(t, 10*idle, func() error {
		if n := adminMetrics(t).value("udp_dataplane_flows_gauge", "port", strconv.Itoa(public)); n != 0 {
			return fmt.Errorf("udp_dataplane_flows_gauge = %v", n)
		}
		return nil
	})
	if got := exchange(t, c, []byte("who")); string(got) != "echo" {
		t.Fatalf("after the flows went idle, the third visitor got %q", got)
	}
}

// One source sending from 2,000 ports, as a spoofer or a scanner does,
// takes at most udp_max_flows_per_source (default 128) of a port's flows:
// a visitor from another address is still served, and what was turned
// away is counted.
func TestOneSourceTakesAtMostItsShareOfAUDPPortsFlows(t *testing.T) {
	const ports = 2000
	public := testenv.FreePort(t)
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(public))
	testenv.Client(t, udpClient(srv.URL, public, udpEcho(t, "echo")))
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: public}

	for i := range ports {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, to)
		if err != nil {
			t.Fatalf("source port %d: %v", i, err)
		}
		_, err = c.Write([]byte("who"))
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		m := adminMetrics(t)
		dropped := m.value("udp_dataplane_datagrams_dropped_total", "port", strconv.Itoa(public), "reason", "source_limit")
		// The kernel may drop some of the burst before Caddy reads it:
		// the datagrams Caddy turned away are at most the rest.
		if flows := int(m.value("udp_dataplane_flows_gauge", "port", strconv.Itoa(public))); flows != l4ports.DefaultUDPMaxFlowsPerSource || dropped < 1 || int(dropped) > ports-flows {
			return fmt.Errorf("%d flows open, %v datagrams dropped (source_limit); want %d, and 1 to %d",
				flows, dropped, l4ports.DefaultUDPMaxFlowsPerSource, ports-l4ports.DefaultUDPMaxFlowsPerSource)
		}
		return nil
	})

	other, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)}, to)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := exchange(t, other, []byte("who")); string(got) != "echo" {
		t.Fatalf("a visitor from 127.0.0.3 got %q", got)
	}
}

func TestProxyProtocolV2HeadsEveryDatagramWithTheVisitorsAddress(t *testing.T) {
	// An upstream that reads the PROXY v2 header of each datagram and
	// answers with the source address it carries.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(buf[:n])))
			answer := "no PROXY header: " + fmt.Sprint(err)
			if err == nil {
				answer = fmt.Sprintf("%s datagram=%v", h.SourceAddr, h.TransportProtocol.IsDatagram())
			}
			pc.WriteTo([]byte(answer), from)
		}
	}()
	public := testenv.FreePort(t)
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(public), "proxy_protocol v2")
	testenv.Client(t, udpClient(srv.URL, public, pc.LocalAddr().String()))
	c := dialUDP(t, public)
	want := c.LocalAddr().String() + " datagram=true"
	for i := range 3 {
		if got := string(exchange(t, c, []byte("datagram"))); got != want {
			t.Fatalf("datagram %d: the upstream read %q, want %q", i, got, want)
		}
	}
}

// A reload keeps a UDP flow: the same visitor address goes on in the same
// flow, on the same stream and client.
func TestAUDPFlowLivesThroughAReload(t *testing.T) {
	public := testenv.FreePort(t)
	srv := tcpServer(t, "udp_ports "+strconv.Itoa(public))
	testenv.Client(t, udpClient(srv.URL, public, udpEcho(t, "echo")))
	c := dialUDP(t, public)
	if got := exchange(t, c, []byte("before")); string(got) != "before" {
		t.Fatalf("before the reload: %q", got)
	}
	srv.reload(t, tcpGlobals("udp_ports "+strconv.Itoa(public), "udp_idle_timeout 2m"))
	for i := range 5 {
		if got := exchange(t, c, []byte("after")); string(got) != "after" {
			t.Fatalf("datagram %d after the reload: %q", i, got)
		}
	}
	if n := adminMetrics(t).value("udp_dataplane_flows_total", "port", strconv.Itoa(public)); n != 1 {
		t.Fatalf("udp_dataplane_flows_total = %v after a reload, want the one flow", n)
	}
}
