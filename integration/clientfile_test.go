package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// mixedServer is a bin/caddy process serving everything a client file can
// announce: an HTTP site with the inlets handler, TCP and UDP ports bound
// to l4Bind, and TLS passthrough by name on a port shared with a site of
// its own.
type mixedServer struct {
	*caddyServer
	shared int // the TLS passthrough port
}

func startMixedServer(t *testing.T, l4Bind string, tcpPorts []int, udpPort int) *mixedServer {
	t.Helper()
	shared, control := testenv.FreePort(t), testenv.FreePort(t)
	s := &mixedServer{shared: shared, caddyServer: &caddyServer{
		admin:     fmt.Sprintf("localhost:%d", testenv.FreePort(t)),
		site:      fmt.Sprintf("127.0.0.1:%d", control),
		configDir: isolateCaddy(t),
	}}
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https disable_redirects
	skip_install_trust
	grace_period 5s
	servers :%d {
		listener_wrappers {
			layer4 {
				@tunnels tls sni *.test
				route @tunnels {
					inlets
				}
			}
			tls
		}
	}
	inlets {
		tcp {
			bind %s
			ports %d %d
			udp_ports %d
		}
	}
}
https://c.test:%d {
	tls internal
	respond "caddy's own site"
}
:%d {
	bind 127.0.0.1
	%s
}
`, s.admin, shared, l4Bind, tcpPorts[0], tcpPorts[1], udpPort, shared, control, inletsBoth)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(t, "run", "--config", file, "--adapter", "caddyfile")
	return s
}

// modesOf lists the modes of the sessions of client id in the server's
// status.
func (s *mixedServer) modesOf(t *testing.T, id string) []string {
	t.Helper()
	var modes []string
	for _, c := range s.status(t).Clients {
		if c.ClientID == id {
			modes = append(modes, c.Mode)
		}
	}
	return modes
}

// greetingFrom connects to host:port and reads the echo upstream's
// greeting; "" if the connection was refused or closed before one.
func greetingFrom(host string, port int) (net.Conn, string) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(port)), 5*time.Second)
	if err != nil {
		return nil, ""
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, ""
	}
	c.SetDeadline(time.Time{})
	return c, strings.TrimSuffix(line, "\n")
}

// udpWho asks the UDP port at host who serves it.
func udpWho(host string, port int) string {
	c, err := net.Dial("udp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	c.Write([]byte("who"))
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// One client process with a config file of two HTTP hosts, an h2c host,
// two TCP ports, a UDP port and a TLS name, connected to two servers:
// every one of them is served on both, with two sessions per server (one
// per mode). A SIGHUP after removing a port withdraws only that port: a
// connection open on the other port carries on, and the HTTP session is
// untouched. A file that a server refuses (a port it does not allow), or
// with a mistake (refused with its line), changes nothing: the client
// keeps serving the last good file.
func TestOneClientFileServesEveryKindOnTwoServersAndReloadsOnSIGHUP(t *testing.T) {
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (CI installs it, see .ci/run)", tool)
		}
	}
	webOne, webTwo := newUpstream(t, "web-one"), newUpstream(t, "web-two")
	h2c := newH2CUpstream(t, "h2c-web")
	echoOne, echoTwo := newEchoUpstream(t, "tcp-one"), newEchoUpstream(t, "tcp-two")
	udp := udpEcho(t, "udp-echo")
	tlsPort := tlsUpstream(t, "a.test")
	p1, p2, u := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	servers := []*mixedServer{
		startMixedServer(t, "127.0.0.1", []int{p1, p2}, u),
		startMixedServer(t, "127.0.0.2", []int{p1, p2}, u),
	}
	l4Hosts := []string{"127.0.0.1", "127.0.0.2"}

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testenv.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "client.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	udpHost, udpLocal, _ := net.SplitHostPort(udp)
	config := func(ports string) string {
		return fmt.Sprintf(`# the home lab
url:
  - ws://%s
  - ws://%s
token-file: token
id: homelab
http:
  - host: one.example.com
    upstream: %s
  - host: two.example.com
    upstream: %s
  - host: h2c.example.com
    upstream: h2c://%s
tcp:
  - upstream: 127.0.0.1
    ports: %s
  - upstream: %s
    udp-ports: %d:%s
    sni: a.test=%d
`, servers[0].site, servers[1].site, webOne.URL, webTwo.URL, h2c, ports, udpHost, u, udpLocal, tlsPort)
	}
	both := fmt.Sprintf("%d:%d,%d:%d", p1, echoOne.port, p2, echoTwo.port)
	write(config(both))

	check, ok := runInlets(t, "client", "--config", file, "--check")
	if !ok || !strings.Contains(check, "OK") {
		t.Fatalf("inlets client --check: %v\n%s", ok, check)
	}
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "client", "--config", file)
	for i, s := range servers {
		testenv.Eventually(t, 15*time.Second, func() error {
			if modes := s.modesOf(t, "homelab"); len(modes) != 2 {
				return fmt.Errorf("server %d: sessions of homelab: %v, want one http and one tcp", i, modes)
			}
			return nil
		})
	}

	serves := func(i int, wantP2 bool) {
		t.Helper()
		s, host := servers[i], l4Hosts[i]
		for _, tt := range []struct{ host, want string }{
			{"one.example.com", `"upstream":"web-one"`},
			{"two.example.com", `"upstream":"web-two"`},
			{"h2c.example.com", "h2c-web HTTP/2.0 h2c.example.com"},
		} {
			if code, body := testenv.Get(t, s.site, tt.host, "/"); code != 200 || !strings.Contains(body, tt.want) {
				t.Errorf("server %d, %s: %d %q, want %q", i, tt.host, code, body, tt.want)
			}
		}
		if c, who := greetingFrom(host, p1); who != "tcp-one" {
			t.Errorf("server %d, TCP port %d: greeting %q, want tcp-one", i, p1, who)
		} else {
			c.Close()
		}
		c, who := greetingFrom(host, p2)
		if c != nil {
			c.Close()
		}
		if want := map[bool]string{true: "tcp-two", false: ""}[wantP2]; who != want {
			t.Errorf("server %d, TCP port %d: greeting %q, want %q", i, p2, who, want)
		}
		if who := udpWho(host, u); who != "udp-echo" {
			t.Errorf("server %d, UDP port %d: %q, want udp-echo", i, u, who)
		}
		if code, body := curlTLS(t, s.shared, "a.test", "127.0.0.1"); code != 0 || !strings.Contains(body, "s_server") {
			t.Errorf("server %d, TLS name a.test: curl exit %d, %.80q", i, code, body)
		}
	}
	serves(0, true)
	serves(1, true)

	// Connections open on the port that stays, and the HTTP session's
	// identity, live through the reload.
	var open []net.Conn
	for _, host := range l4Hosts {
		c, who := greetingFrom(host, p1)
		if who != "tcp-one" {
			t.Fatalf("TCP port %d at %s: greeting %q", p1, host, who)
		}
		t.Cleanup(func() { c.Close() })
		open = append(open, c)
	}
	httpSessions := func() []string {
		var ids []string
		for _, s := range servers {
			for _, c := range s.status(t).Clients {
				if c.ClientID == "homelab" && c.Mode == "http" {
					ids = append(ids, c.RemoteAddr+" "+c.Since.String())
				}
			}
		}
		return ids
	}
	before := httpSessions()
	// stillOpen checks that the connections opened before the reloads
	// carry data both ways.
	stillOpen := func(when string) {
		t.Helper()
		for i, c := range open {
			msg := fmt.Sprintf("%s %d\n", when, i)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatalf("connection %d opened before the reload, %s: %v", i, when, err)
			}
			if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != msg {
				t.Errorf("connection %d opened before the reload, %s: echoed %q, %v; want %q", i, when, got, err, msg)
			}
		}
	}
	// refused sends SIGHUP for a file that must change nothing: the
	// client says why (want) and that it keeps the last good file, which
	// every server still serves.
	refused := func(want string) {
		t.Helper()
		p.Cmd.Process.Signal(syscall.SIGHUP)
		p.WaitOutput(t, 20*time.Second, want)
		if !strings.Contains(p.Output(), "keeping the last good") {
			t.Errorf("the client did not say it keeps the last good configuration:\n%s", p.Output())
		}
		serves(0, false)
		serves(1, false)
	}

	write(config(fmt.Sprintf("%d:%d", p1, echoOne.port)))
	p.Cmd.Process.Signal(syscall.SIGHUP)
	p.WaitOutput(t, 15*time.Second, "reloaded")
	for i := range servers {
		testenv.Eventually(t, 15*time.Second, func() error {
			if c, who := greetingFrom(l4Hosts[i], p2); who != "" {
				c.Close()
				return fmt.Errorf("server %d still serves port %d", i, p2)
			}
			return nil
		})
	}
	serves(0, false)
	serves(1, false)
	stillOpen("after the reload")
	// The replaced layer-4 sessions drain: each server lists one, retired,
	// beside the new one, while the connections on it are open.
	for i, s := range servers {
		var retired, live int
		for _, c := range s.status(t).Clients {
			if c.ClientID == "homelab" && c.Mode == "tcp" {
				if c.Retired {
					retired++
				} else {
					live++
				}
			}
		}
		if retired != 1 || live != 1 {
			t.Errorf("server %d lists %d retired and %d live layer-4 sessions of homelab, want 1 and 1", i, retired, live)
		}
	}
	if after := httpSessions(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("HTTP sessions %v became %v: the reload changed only TCP ports", before, after)
	}

	// A port no server allows: the new client is refused, and the one
	// running keeps its ports and connections.
	notAllowed := testenv.FreePort(t)
	write(config(fmt.Sprintf("%d:%d,%d:%d", p1, echoOne.port, notAllowed, echoTwo.port)))
	refused("was refused by a server")
	stillOpen("after the refused reload")

	// A mistake: refused with its line; the last good file serves on.
	write(config(fmt.Sprintf("%d:%d", p1, echoOne.port)) + "  - upstream: 127.0.0.1\n    ports: 99999\n")
	refused("client.yaml:21")
}

// runInlets runs bin/inlets with args and returns its output and whether
// it exited 0.
func runInlets(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(testenv.Binary(t, "inlets"), args...).CombinedOutput()
	return string(out), err == nil
}
