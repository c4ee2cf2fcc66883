package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// tcpTestServer is the in-process Caddy with a control-plane site and the
// inlets global option's tcp block, listening on loopback.
type tcpTestServer struct {
	*testenv.Caddy
	// URL is the control plane, for clients' --url.
	URL  string
	site string
}

// tcpGlobals is the inlets global option with a tcp block that binds
// 127.0.0.1 and has the given options, one per line.
func tcpGlobals(options ...string) string {
	var b strings.Builder
	b.WriteString("\tinlets {\n\t\ttcp {\n\t\t\tbind 127.0.0.1\n")
	for _, o := range options {
		b.WriteString("\t\t\t" + o + "\n")
	}
	b.WriteString("\t\t}\n\t}")
	return b.String()
}

// allowPorts is the tcp block's ports option for the given ports.
func allowPorts(ports ...int) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = strconv.Itoa(p)
	}
	return "ports " + strings.Join(parts, " ")
}

// tcpServer loads a config whose tcp block has options.
func tcpServer(t *testing.T, options ...string) *tcpTestServer {
	t.Helper()
	port := testenv.FreePort(t)
	site := fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth)
	c := testenv.StartCaddy(t, adminPort, tcpGlobals(options...), site)
	return &tcpTestServer{Caddy: c, URL: fmt.Sprintf("ws://127.0.0.1:%d", port), site: site}
}

// reload replaces the config as `caddy reload` does, keeping the site.
func (s *tcpTestServer) reload(t *testing.T, globals string) {
	t.Helper()
	if err := s.Load(testenv.Caddyfile(adminPort, globals, s.site)); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// tcpClient is a client config serving public ports from upstream
// addresses given in pairs: public port, "host:port".
func tcpClient(url string, pairs ...any) client.Config {
	cfg := client.Config{URL: url}
	for i := 0; i+1 < len(pairs); i += 2 {
		cfg.TCP = append(cfg.TCP, tunnel.TCPUpstream{Port: pairs[i].(int), Upstream: pairs[i+1].(string)})
	}
	return cfg
}

// inletsTCP starts the real inlets binary as a TCP client.
func inletsTCP(t *testing.T, url, id string, args ...string) *testenv.Process {
	t.Helper()
	base := []string{"tcp", "client", "--url", url, "--token", testenv.Token, "--id", id}
	return testenv.Start(t, testenv.Binary(t, "inlets"), append(base, args...)...)
}

func TestSSHThroughTheTunnelWithARemappedPort(t *testing.T) {
	sshd := startSSHD(t)
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))

	// As `--ports 2222:22`: the public port differs from the upstream's.
	p := inletsTCP(t, srv.URL, "ssh-client", "--upstream", "127.0.0.1", "--ports", fmt.Sprintf("%d:%d", public, sshd.Port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")

	if out := sshd.run(t, public, "echo", "hello-through-tunnel"); out != "hello-through-tunnel\n" {
		t.Fatalf("ssh through the tunnel printed %q", out)
	}
}

// sameFreePort returns a port free on both 127.0.0.1 and 127.0.0.2, for a
// public port served by an upstream of the same number on another host.
func sameFreePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		port := testenv.FreePort(t)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return 0
}

func TestInletsBinaryServesRemappedAndUnmappedPortsFlagsAndAliases(t *testing.T) {
	// Upstreams on 127.0.0.2 so that an unmapped port (--ports 8000) can
	// have the same number as its public port on 127.0.0.1.
	same := sameFreePort(t)
	remapped := newEchoUpstreamOn(t, "127.0.0.2", "remapped")
	aliased := newEchoUpstreamOn(t, "127.0.0.2", "aliased")
	serveTCPOn(t, fmt.Sprintf("127.0.0.2:%d", same), echoHandler("unmapped"))

	publicRemapped, publicAliased := testenv.FreePort(t), testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(publicRemapped, publicAliased, same))
	p := inletsTCP(t, srv.URL, "remap-client", "--upstream", "127.0.0.2",
		"--ports", fmt.Sprintf("%d:%d,%d", publicRemapped, remapped.port, same),
		"--port", fmt.Sprintf("%d:%d", publicAliased, aliased.port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")

	for port, want := range map[int]string{publicRemapped: "remapped", same: "unmapped", publicAliased: "aliased"} {
		if got := whoServes(t, port); got != want {
			t.Errorf("public port %d reached %q, want %q", port, got, want)
		}
	}
}

func TestCaddyBinaryRunsTheTCPClient(t *testing.T) {
	up := newEchoUpstream(t, "from-caddy-binary")
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	p := testenv.Start(t, testenv.Binary(t, "caddy"), "inlets", "tcp", "client", "--url", srv.URL,
		"--token", testenv.Token, "--id", "caddy-tcp-client", "--upstream", "127.0.0.1", "--port", fmt.Sprintf("%d:%d", public, up.port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	if got := whoServes(t, public); got != "from-caddy-binary" {
		t.Fatalf("through `caddy inlets tcp client`: reached %q", got)
	}
}

func TestTCPCarries100MBEachWayIntact(t *testing.T) {
	const size = 100 << 20
	up := newEchoUpstream(t, "bulk")
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	testenv.Client(t, tcpClient(srv.URL, public, up.Addr()))

	c := dialTunnel(t, public)
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	r := bufio.NewReaderSize(c, 64<<10)
	if name := greeting(t, r); name != "bulk" {
		t.Fatalf("greeting %q", name)
	}
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, payload(size))
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil || n != size {
		t.Fatalf("read back %d of %d bytes: %v", n, size, err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if got, want := hex.EncodeToString(h.Sum(nil)), payloadSHA(size); got != want {
		t.Fatalf("sha256 of the 100 MB that came back: %s, want %s", got, want)
	}
	t.Logf("100 MB up and 100 MB down in %s", time.Since(start).Round(time.Millisecond))
}

func TestTCP200ConcurrentConnectionsEachGetTheirOwnData(t *testing.T) {
	const conns, size = 200, 64 << 10
	up := newEchoUpstream(t, "echo")
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	testenv.Client(t, tcpClient(srv.URL, public, up.Addr()))

	// Every connection is open, greeted, before any sends its data.
	var ready, done sync.WaitGroup
	ready.Add(conns)
	done.Add(conns)
	start := make(chan struct{})
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			defer done.Done()
			err := func() error {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", public), 10*time.Second)
				ready.Done()
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				r := bufio.NewReader(c)
				if line, err := r.ReadString('\n'); err != nil || line != "echo\n" {
					return fmt.Errorf("greeting %q: %v", line, err)
				}
				<-start
				data := bytes.Repeat([]byte(fmt.Sprintf("connection %03d|", i)), size/16)
				go func() {
					c.Write(data)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(r)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, data) {
					return fmt.Errorf("got %d bytes back, not its own %d", len(got), len(data))
				}
				return nil
			}()
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDisallowedAndUnbindablePortsAreRefusedWithAReason(t *testing.T) {
	up := newEchoUpstream(t, "app")
	good, disallowed, taken := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(good, taken))

	// Another program holds a port the config allows.
	holder, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", taken))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	upstream := []string{"--upstream", "127.0.0.1"}
	p := inletsTCP(t, srv.URL, "disallowed-port-client", append(upstream, "--ports", fmt.Sprintf("%d:%d,%d:%d", good, up.port, disallowed, up.port))...)
	p.WaitOutput(t, 10*time.Second, fmt.Sprintf("server rejected the tunnel: port %d is not in the server's allowed ports %d %d", disallowed, good, taken))
	p.Kill()

	p = inletsTCP(t, srv.URL, "taken-port-client", append(upstream, "--ports", fmt.Sprintf("%d:%d,%d:%d", good, up.port, taken, up.port))...)
	p.WaitOutput(t, 10*time.Second, fmt.Sprintf("server rejected the tunnel: port %d cannot be opened on 127.0.0.1: listen tcp 127.0.0.1:%d: bind: address already in use; another program on the server uses this port", taken, taken))
	p.Kill()

	// Nothing of either announcement stayed: no session, and the allowed
	// port announced with the refused one does not listen. (A killed
	// client may have been in the middle of a retry, hence the polling.)
	testenv.Eventually(t, 5*time.Second, func() error {
		for _, id := range []string{"disallowed-port-client", "taken-port-client"} {
			if n := len(sessionsOf(id)); n != 0 {
				return fmt.Errorf("refused client %s has %d sessions", id, n)
			}
		}
		for _, port := range []int{good, disallowed} {
			if err := notListening(port); err != nil {
				return fmt.Errorf("after refusals: %v", err)
			}
		}
		return nil
	})

	// The server is unaffected: a client announcing the allowed port works.
	testenv.Client(t, tcpClient(srv.URL, good, up.Addr()))
	if got := whoServes(t, good); got != "app" {
		t.Fatalf("allowed port after refusals reached %q", got)
	}
}

func TestTwoClientsShareAPortRoundRobinAndOneCanBeKilled(t *testing.T) {
	upA, upB := newEchoUpstream(t, "a"), newEchoUpstream(t, "b")
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	a := inletsTCP(t, srv.URL, "ha-a", "--upstream", "127.0.0.1", "--ports", fmt.Sprintf("%d:%d", public, upA.port))
	b := inletsTCP(t, srv.URL, "ha-b", "--upstream", "127.0.0.1", "--ports", fmt.Sprintf("%d:%d", public, upB.port))
	a.WaitOutput(t, 10*time.Second, "msg=connected")
	b.WaitOutput(t, 10*time.Second, "msg=connected")

	seen := map[string]int{}
	for range 10 {
		seen[whoServes(t, public)]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Fatalf("round robin over two clients: got %v, want 5 each", seen)
	}

	a.Kill()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := len(sessionsOf("ha-a")); n != 0 {
			return fmt.Errorf("killed client still has %d sessions", n)
		}
		return nil
	})
	for range 10 {
		if got := whoServes(t, public); got != "b" {
			t.Fatalf("after a was killed, a connection reached %q", got)
		}
	}
}

func TestLeastConnSendsNewConnectionsToTheLessBusyClient(t *testing.T) {
	upA, upB := newEchoUpstream(t, "a"), newEchoUpstream(t, "b")
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public), "lb_policy least_conn")
	ids := map[string]string{}
	ids["a"] = testenv.Client(t, tcpClient(srv.URL, public, upA.Addr())).ID()
	ids["b"] = testenv.Client(t, tcpClient(srv.URL, public, upB.Addr())).ID()

	// One connection stays open on one client, busy; the other is idle.
	held := dialTunnel(t, public)
	busy := greeting(t, bufio.NewReader(held))
	idle := map[string]string{"a": "b", "b": "a"}[busy]
	for i := range 6 {
		// Wait for the previous connection's stream to be closed on the
		// server too, so that the idle client counts no stream.
		testenv.Eventually(t, 5*time.Second, func() error {
			if s := sessionsOf(ids[idle]); len(s) != 1 || s[0].Streams() != 0 {
				return fmt.Errorf("client %s: the previous connection is still open", idle)
			}
			return nil
		})
		if got := whoServes(t, public); got != idle {
			t.Fatalf("connection %d went to %q, which has a connection open; want %q", i, got, idle)
		}
	}
}

func TestHalfClosedRequestGetsItsWholeResponse(t *testing.T) {
	const request, reply = 1 << 20, 8 << 20
	up := newReplyAfterEOFUpstream(t, reply)
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	testenv.Client(t, tcpClient(srv.URL, public, up.Addr()))

	c := dialTunnel(t, public)
	if _, err := io.Copy(c, payload(request)); err != nil {
		t.Fatal(err)
	}
	// shutdown(SHUT_WR): the upstream answers only once it reads EOF.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer after the half-close: %v", err)
	}
	if want := fmt.Sprintf("%d %s\n", request, payloadSHA(request)); line != want {
		t.Fatalf("upstream read %q, want %q", line, want)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil || n != reply || hex.EncodeToString(h.Sum(nil)) != payloadSHA(reply) {
		t.Fatalf("reply after the half-close: %d of %d bytes, err %v", n, reply, err)
	}
}

func TestProxyProtocolHeadersCarryTheVisitorsAddress(t *testing.T) {
	up := newProxyProtocolUpstream(t)
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public), "proxy_protocol v1")
	testenv.Client(t, tcpClient(srv.URL, public, up.Addr()))

	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			if version == 2 {
				srv.reload(t, tcpGlobals(allowPorts(public), "proxy_protocol v2"))
			}
			c := dialTunnel(t, public)
			var info proxyInfo
			if err := json.NewDecoder(c).Decode(&info); err != nil {
				t.Fatal(err)
			}
			want := proxyInfo{Version: version, Proxy: true,
				Source: c.LocalAddr().String(), Destination: fmt.Sprintf("127.0.0.1:%d", public)}
			if info != want {
				t.Fatalf("upstream read the PROXY header %+v, want %+v", info, want)
			}
		})
	}
}

// sshShell is an ssh session running a shell whose stdin stays open.
type sshShell struct {
	stdin io.WriteCloser
	lines chan string
	cmd   interface{ Wait() error }
}

func openSSHShell(t *testing.T, sshd *sshServer, port int) *sshShell {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := sshd.command(ctx, port, "sh")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return &sshShell{stdin: stdin, lines: lines, cmd: cmd}
}

// run types a command into the shell and returns the line it prints.
func (s *sshShell) run(t *testing.T, command string) string {
	t.Helper()
	if _, err := io.WriteString(s.stdin, command+"\n"); err != nil {
		t.Fatalf("typing %q: %v", command, err)
	}
	select {
	case line, ok := <-s.lines:
		if !ok {
			t.Fatalf("the ssh session ended before answering %q", command)
		}
		return line
	case <-time.After(30 * time.Second):
		t.Fatalf("no answer to %q", command)
		return ""
	}
}

func TestReloadKeepsAnOpenSSHSessionWorking(t *testing.T) {
	sshd := startSSHD(t)
	public, extra := testenv.FreePort(t), testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	cl := testenv.Client(t, tcpClient(srv.URL, public, fmt.Sprintf("127.0.0.1:%d", sshd.Port)))
	before := sessionsOf(cl.ID())

	shell := openSSHShell(t, sshd, public)
	if got := shell.run(t, "echo before-reload"); got != "before-reload" {
		t.Fatalf("before the reload: %q", got)
	}

	// A changed config: other settings, one more port.
	srv.reload(t, tcpGlobals(allowPorts(public, extra), "idle_timeout 2h", "lb_policy least_conn"))

	if got := shell.run(t, "echo after-reload"); got != "after-reload" {
		t.Fatalf("the ssh session opened before the reload: %q", got)
	}
	if after := sessionsOf(cl.ID()); len(after) != 1 || after[0] != before[0] {
		t.Fatalf("the client's session changed across the reload")
	}
	// The new config listens too.
	if out := sshd.run(t, public, "echo", "new-connection"); out != "new-connection\n" {
		t.Fatalf("a new ssh connection after the reload printed %q", out)
	}
}

func TestReloadThatDisallowsAPortClosesItAndTellsTheClient(t *testing.T) {
	up := newEchoUpstream(t, "app")
	kept, dropped := testenv.FreePort(t), testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(kept, dropped))
	p := inletsTCP(t, srv.URL, "withdrawn-client", "--upstream", "127.0.0.1",
		"--ports", fmt.Sprintf("%d:%d,%d:%d", kept, up.port, dropped, up.port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	session := sessionsOf("withdrawn-client")
	if whoServes(t, dropped) != "app" {
		t.Fatal("port not served before the reload")
	}

	srv.reload(t, tcpGlobals(allowPorts(kept)))
	testenv.Eventually(t, 5*time.Second, func() error { return notListening(dropped) })
	disallowed := fmt.Sprintf(`msg="server stopped serving ports" ports=[%d] reason="the server's allowed ports are now %d"`, dropped, kept)
	p.WaitOutput(t, 10*time.Second, disallowed)
	if got := whoServes(t, kept); got != "app" {
		t.Fatalf("the port still allowed reached %q", got)
	}
	if now := sessionsOf("withdrawn-client"); len(now) != 1 || now[0] != session[0] {
		t.Fatal("the client lost its session to the withdrawal")
	}

	// Another reload that keeps the port out does not repeat the message;
	// the next message (below) proves none came in between.
	srv.reload(t, tcpGlobals(allowPorts(kept), "lb_policy least_conn"))

	// Allowed again while another program holds it: the reload succeeds
	// and the client is told why the port is still not served.
	holder, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", dropped))
	if err != nil {
		t.Fatal(err)
	}
	srv.reload(t, tcpGlobals(allowPorts(kept, dropped)))
	p.WaitOutput(t, 10*time.Second, fmt.Sprintf(`ports=[%d] reason="port %d cannot be opened on 127.0.0.1: listen tcp 127.0.0.1:%d: bind: address already in use`, dropped, dropped, dropped))
	if n := strings.Count(p.Output(), disallowed); n != 1 {
		t.Fatalf("the withdrawal was reported %d times, want once", n)
	}
	if got := whoServes(t, kept); got != "app" {
		t.Fatalf("after a reload with an unbindable port, the other port reached %q", got)
	}

	// Free and allowed again, the port listens again for the same session.
	holder.Close()
	srv.reload(t, tcpGlobals(allowPorts(kept, dropped), "idle_timeout 2h"))
	if got := whoServes(t, dropped); got != "app" {
		t.Fatalf("port allowed again reached %q", got)
	}

	// A config without the tcp block: every port goes, the client is told.
	srv.reload(t, "")
	p.WaitOutput(t, 10*time.Second, "reason=\"the server's configuration no longer serves TCP or UDP tunnels")
	for _, port := range []int{kept, dropped} {
		testenv.Eventually(t, 5*time.Second, func() error { return notListening(port) })
	}
	refused := inletsTCP(t, srv.URL, "no-tcp-client", "--upstream", "127.0.0.1", "--ports", strconv.Itoa(kept))
	refused.WaitOutput(t, 10*time.Second, "server rejected the tunnel: this server does not serve TCP tunnels")
}

func TestIdleTCPConnectionIsClosedAfterTheIdleTimeout(t *testing.T) {
	const idle = time.Second
	up := newEchoUpstream(t, "app")
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public), "idle_timeout "+idle.String())
	testenv.Client(t, tcpClient(srv.URL, public, up.Addr()))

	// A connection that moves a byte more often than the timeout lives on.
	busy := dialTunnel(t, public)
	br := bufio.NewReader(busy)
	greeting(t, br)
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	for end := time.Now().Add(3 * idle); time.Now().Before(end); <-tick.C {
		busy.Write([]byte{'x'})
		if b, err := br.ReadByte(); err != nil || b != 'x' {
			t.Fatalf("a busy connection was cut: %v", err)
		}
	}

	// A silent one is closed once the timeout has passed, not before: its
	// relay starts after the dial, so it cannot end before start+idle.
	start := time.Now()
	quiet := dialTunnel(t, public)
	qr := bufio.NewReader(quiet)
	greeting(t, qr)
	if _, err := qr.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: got %v, want EOF", err)
	}
	if open := time.Since(start); open < idle || open > 10*idle {
		t.Fatalf("idle connection closed after %s, want about %s", open, idle)
	}
}

func TestTCPConnectionsAndClientsLeaveNoGoroutinesOrFileDescriptors(t *testing.T) {
	echo := newEchoUpstream(t, "echo")
	hangup := serveTCP(t, "127.0.0.1", func(c net.Conn) { io.WriteString(c, "bye\n") })
	down := testenv.FreePort(t) // nothing listens: the client cannot reach it
	echoPort, hangupPort, downPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(echoPort, hangupPort, downPort))

	exercise := func(clients int) {
		var running []*testenv.RunningClient
		for range clients {
			running = append(running, testenv.Client(t, tcpClient(srv.URL,
				echoPort, echo.Addr(), hangupPort, hangup.Addr(), downPort, fmt.Sprintf("127.0.0.1:%d", down))))
		}
		for range 4 * clients {
			// A full exchange ended by the visitor's half-close.
			c := dialTunnel(t, echoPort)
			r := bufio.NewReader(c)
			greeting(t, r)
			c.Write([]byte("ping"))
			c.CloseWrite()
			if rest, _ := io.ReadAll(r); string(rest) != "ping" {
				t.Fatalf("echo: %q", rest)
			}
			c.Close()

			// The visitor resets mid-stream.
			c = dialTunnel(t, echoPort)
			greeting(t, bufio.NewReader(c))
			c.Write(make([]byte, 64<<10))
			c.SetLinger(0)
			c.Close()

			// The upstream hangs up first.
			c = dialTunnel(t, hangupPort)
			if rest, _ := io.ReadAll(c); string(rest) != "bye\n" {
				t.Fatalf("hangup: %q", rest)
			}
			c.Close()

			// The upstream is unreachable: the client refuses the
			// stream, and the visitor's connection is reset (its first
			// bytes went with the stream's header, before the refusal).
			// On a busy machine the reset can come before the dialler
			// has seen its connection established: the dial fails then.
			visitor, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", downPort), 5*time.Second)
			if err != nil {
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("unreachable upstream: dial: %v", err)
				}
				continue
			}
			visitor.SetDeadline(time.Now().Add(60 * time.Second))
			if rest, err := io.ReadAll(visitor); len(rest) != 0 || err != nil && !isReset(err) {
				t.Fatalf("unreachable upstream: %q, %v", rest, err)
			}
			visitor.Close()
		}
		for _, c := range running {
			c.Stop()
		}
		for _, c := range running {
			testenv.Eventually(t, 5*time.Second, func() error {
				if n := len(sessionsOf(c.ID())); n > 0 {
					return fmt.Errorf("client %s still has a session", c.ID())
				}
				return nil
			})
		}
		// The last client serving a port is gone: the port is closed.
		for _, port := range []int{echoPort, hangupPort, downPort} {
			testenv.Eventually(t, 5*time.Second, func() error { return notListening(port) })
		}
	}

	exercise(1)
	base := testenv.SettledResources(t)
	exercise(3)
	testenv.ResourcesBackTo(t, base, "3 clients and their connections ended")
}

// The data plane given as an app of its own, apps.inlets_tcp (the form
// of configs written before it was the inlets app's tcp), serves the
// same; a config that gives it in both places is refused, and the
// running one keeps serving.
func TestTheDataPlaneAsTheInletsTCPAppServesAndTwiceIsRefused(t *testing.T) {
	up := newEchoUpstream(t, "app")
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	testenv.Client(t, tcpClient(srv.URL, public, up.Addr()))
	cfg := adminConfig(t, srv.Caddy)
	apps := cfg["apps"].(map[string]any)
	inlets := apps["inlets"].(map[string]any)
	plane := inlets["tcp"]
	if plane == nil {
		t.Fatalf("the adapted config has no inlets tcp: %v", inlets)
	}

	// Both: refused, naming the fix.
	apps["inlets_tcp"] = plane
	if err := postJSON(srv.Caddy, cfg); err == nil || !strings.Contains(err.Error(), "configured twice, as the inlets app's tcp and as the inlets_tcp app: keep one") {
		t.Fatalf("a config with the data plane twice: %v", err)
	}
	if got := whoServes(t, public); got != "app" {
		t.Fatalf("after a refused config the port reached %q", got)
	}

	// The app of its own only: the client's port goes on, now the
	// inlets_tcp app's.
	delete(inlets, "tcp")
	if err := postJSON(srv.Caddy, cfg); err != nil {
		t.Fatal(err)
	}
	if got := whoServes(t, public); got != "app" {
		t.Fatalf("a port of the inlets_tcp app reached %q", got)
	}
}

// adminConfig is the config running in c, as its admin API gives it.
func adminConfig(t *testing.T, c *testenv.Caddy) map[string]any {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/config/", c.AdminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cfg map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// postJSON loads a JSON config into c through its admin API.
func postJSON(c *testenv.Caddy, cfg map[string]any) error {
	body, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return c.LoadJSON(body)
}
