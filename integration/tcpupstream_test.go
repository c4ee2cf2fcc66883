package integration

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// tcpUpstream is a TCP service behind a tunnel client, on loopback.
type tcpUpstream struct {
	ln   net.Listener
	port int
	wg   sync.WaitGroup
}

// Addr is the upstream's host:port, as a client's TCP upstream.
func (u *tcpUpstream) Addr() string { return u.ln.Addr().String() }

// serveTCP accepts on host:0 (a loopback address) and runs handle for
// each connection, closing it after. Everything stops when the test ends.
func serveTCP(t testing.TB, host string, handle func(net.Conn)) *tcpUpstream {
	t.Helper()
	return serveTCPOn(t, net.JoinHostPort(host, "0"), handle)
}

// serveTCPOn is serveTCP on a given host:port.
func serveTCPOn(t testing.TB, addr string, handle func(net.Conn)) *tcpUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &tcpUpstream{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

// newEchoUpstream greets each connection with "name\n", then echoes every
// byte, and half-closes at end of file: which client served a connection
// shows in its first line.
func newEchoUpstream(t testing.TB, name string) *tcpUpstream {
	return newEchoUpstreamOn(t, "127.0.0.1", name)
}

func newEchoUpstreamOn(t testing.TB, host, name string) *tcpUpstream {
	return serveTCP(t, host, echoHandler(name))
}

func echoHandler(name string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := io.WriteString(c, name+"\n"); err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		if _, err := io.CopyBuffer(c, onlyReader{c}, buf); err != nil {
			return
		}
		c.(*net.TCPConn).CloseWrite()
	}
}

// onlyReader hides a conn's WriterTo, so io.CopyBuffer uses the buffer.
type onlyReader struct{ io.Reader }

// newReplyAfterEOFUpstream reads the whole request, until the visitor's
// half-close, then answers "<bytes> <sha256>\n" followed by replySize
// bytes of payload: the reply exists only if the end of file arrived.
func newReplyAfterEOFUpstream(t *testing.T, replySize int64) *tcpUpstream {
	return serveTCP(t, "127.0.0.1", func(c net.Conn) {
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%d %x\n", n, h.Sum(nil))
		io.Copy(c, payload(replySize))
	})
}

// proxyInfo is what the PROXY protocol upstream read from a header.
type proxyInfo struct {
	Version     int    `json:"version"`
	Proxy       bool   `json:"proxy"` // PROXY command: addresses follow
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Error       string `json:"error,omitempty"`
}

// newProxyProtocolUpstream parses the PROXY protocol header that starts
// each connection and answers with what it carried, as JSON.
func newProxyProtocolUpstream(t *testing.T) *tcpUpstream {
	return serveTCP(t, "127.0.0.1", func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var info proxyInfo
		h, err := proxyproto.Read(bufio.NewReader(c))
		if err != nil {
			info.Error = err.Error()
		} else {
			info = proxyInfo{Version: int(h.Version), Proxy: h.Command.IsProxy(),
				Source: h.SourceAddr.String(), Destination: h.DestinationAddr.String()}
		}
		json.NewEncoder(c).Encode(info)
	})
}

// dialTunnel connects to a data-plane port of the test server.
func dialTunnel(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to tunnel port %d: %v", port, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// greeting reads the echo upstream's first line: the name of the
// upstream, and so of the client, that took the connection.
func greeting(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the upstream's greeting: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// whoServes connects to port, reads the greeting and closes.
func whoServes(t *testing.T, port int) string {
	t.Helper()
	c := dialTunnel(t, port)
	defer c.Close()
	return greeting(t, bufio.NewReader(c))
}

// notListening reports nil once nothing accepts connections on port.
func notListening(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("port %d still accepts connections", port)
}
