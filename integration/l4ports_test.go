package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	// caddy-l4's matchers and handlers, as in bin/caddy.
	_ "github.com/mholt/caddy-l4"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// A layer4 app's own servers, a TCP and a UDP one, whose routes end in
// the inlets handler behind a remote_ip matcher: their ports are served
// to the tunnel clients that announce them, through caddy-l4, and a
// visitor the matcher refuses never reaches a client.
func TestLayer4ServersRouteTheirPortsToTunnelClientsBehindCaddyL4Matchers(t *testing.T) {
	dns := startDnsmasq(t, 5)
	echo := newEchoUpstream(t, "echo")
	tcpPort, udpPort := testenv.FreePort(t), testenv.FreePort(t)
	port := testenv.FreePort(t)
	globals := fmt.Sprintf(`	layer4 {
		udp/127.0.0.1:%[1]d {
			@local remote_ip 127.0.0.1/32
			route @local {
				inlets
			}
		}
		127.0.0.1:%[2]d {
			@local remote_ip 127.0.0.1/32
			route @local {
				inlets
			}
		}
	}
	inlets {
		tcp {
			bind 127.0.0.1
			ports %[2]d
			udp_ports %[1]d
		}
	}`, udpPort, tcpPort)
	testenv.StartCaddy(t, adminPort, globals, fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth))
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)

	// The data plane does not bind the layer4 servers' ports: the client
	// is accepted, and its ports are served through caddy-l4.
	p := inletsTCP(t, url, "l4-ports", "--upstream", "127.0.0.1",
		"--ports", fmt.Sprintf("%d:%d", tcpPort, echo.port), "--udp-ports", fmt.Sprintf("%d:%d", udpPort, dns.port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")

	name := "host-3.example.lan"
	if got, err := dig(udpPort, 0, name); err != nil || len(got) != 1 || got[0] != dns.names[name] {
		t.Fatalf("dig through caddy-l4's UDP server: %q, %v; want %s", got, err, dns.names[name])
	}
	if got := whoServes(t, tcpPort); got != "echo" {
		t.Fatalf("TCP through caddy-l4's server reached %q", got)
	}
	m := adminMetrics(t)
	if n := m.value("udp_dataplane_flows_total", "port", strconv.Itoa(udpPort)); n != 1 {
		t.Errorf("udp_dataplane_flows_total through caddy-l4 = %v, want 1", n)
	}
	if n := m.value("tcp_dataplane_connections_total", "port", strconv.Itoa(tcpPort)); n != 1 {
		t.Errorf("tcp_dataplane_connections_total through caddy-l4 = %v, want 1", n)
	}

	// From 127.0.0.2 the remote_ip matcher does not match: TCP gets no
	// byte of the upstream's, UDP no answer.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil || !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !isReset(err) {
			t.Errorf("a TCP visitor from 127.0.0.2 read %q (%v)", line, err)
		}
		c.Close()
	}
	uc, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Write([]byte("who"))
	uc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := uc.Read(make([]byte, 512)); err == nil {
		t.Errorf("a UDP visitor from 127.0.0.2 got a %d-byte answer", n)
	}
	if n := adminMetrics(t).value("udp_dataplane_flows_total", "port", strconv.Itoa(udpPort)); n != 1 {
		t.Errorf("the refused UDP visitor made a flow: udp_dataplane_flows_total = %v", n)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// examples/layer4-ports.Caddyfile's SSH route: caddy-l4's ssh matcher in
// front of a tunnel's sshd; a visitor that does not speak SSH on the port
// never reaches it.
func TestSSHThroughALayer4ServersSSHMatcher(t *testing.T) {
	sshd := startSSHD(t)
	public, port := testenv.FreePort(t), testenv.FreePort(t)
	globals := fmt.Sprintf(`	layer4 {
		127.0.0.1:%[1]d {
			@ssh ssh
			route @ssh {
				inlets
			}
		}
	}
	inlets {
		tcp {
			bind 127.0.0.1
			ports %[1]d
		}
	}`, public)
	testenv.StartCaddy(t, adminPort, globals, fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth))
	p := inletsTCP(t, fmt.Sprintf("ws://127.0.0.1:%d", port), "l4-ssh", "--upstream", "127.0.0.1", "--ports", fmt.Sprintf("%d:%d", public, sshd.Port))
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	if out := sshd.run(t, public, "echo", "through-caddy-l4"); out != "through-caddy-l4\n" {
		t.Fatalf("ssh through the layer4 route printed %q", out)
	}
	// Not SSH: the matcher does not match, the connection is closed
	// without a byte of sshd's banner.
	c := dialTunnel(t, public)
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("a visitor speaking HTTP read %q", b)
	}
}
