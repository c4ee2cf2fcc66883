package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// Round trips of a small GET, each measured against its baselines in the
// same run: the upstream served directly, through Caddy's own
// reverse_proxy, and through the tunnel (Caddy, a client in this process,
// the upstream). The ratios between them are what matters, not the
// absolute figures.

func benchmarkGets(b *testing.B, url, host string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = host
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func BenchmarkSmallGET(b *testing.B) {
	up := newBenchUpstream(b)
	port := testenv.FreePort(b)
	proxyPort := testenv.FreePort(b)
	testenv.StartCaddy(b, adminPort, "", fmt.Sprintf(":%d {\n\t%s\n}\n:%d {\n\treverse_proxy %s\n}", port, inletsBoth, proxyPort, up.Listener.Addr()))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testenv.Client(b, testenv.HTTPClient("ws://"+addr, "app.example.com", up.URL))

	b.Run("direct", func(b *testing.B) { benchmarkGets(b, up.URL+"/small", "app.example.com") })
	b.Run("reverse_proxy", func(b *testing.B) {
		benchmarkGets(b, fmt.Sprintf("http://127.0.0.1:%d/small", proxyPort), "app.example.com")
	})
	b.Run("tunnel", func(b *testing.B) { benchmarkGets(b, "http://"+addr+"/small", "app.example.com") })
}

// TCP round trips through the TCP data plane (inlets_tcp, a client in
// this process, an echo upstream), against the upstream served directly:
// "roundtrip" is 64 bytes there and back on one connection, "connect" a
// new connection per operation (a stream opened through the tunnel),
// greeted by the upstream and closed.
func BenchmarkTCP(b *testing.B) {
	up := newEchoUpstream(b, "echo")
	port, public := testenv.FreePort(b), testenv.FreePort(b)
	testenv.StartCaddy(b, adminPort, tcpGlobals(allowPorts(public)), fmt.Sprintf(":%d {\n\t%s\n}", port, inletsBoth))
	testenv.Client(b, tcpClient(fmt.Sprintf("ws://127.0.0.1:%d", port), public, up.Addr()))
	tunnel := fmt.Sprintf("127.0.0.1:%d", public)

	for _, s := range []struct{ name, addr string }{{"direct", up.Addr()}, {"tunnel", tunnel}} {
		b.Run("roundtrip/"+s.name, func(b *testing.B) {
			conn := dialGreeted(b, s.addr)
			defer conn.Close()
			msg, got := bytes.Repeat([]byte{'x'}, 64), make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, got); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("connect/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dialGreeted(b, s.addr).Close()
			}
		})
	}
}

// dialGreeted connects to an echo upstream (or a tunnel to one) and
// reads its greeting.
func dialGreeted(b *testing.B, addr string) net.Conn {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	greeting := make([]byte, len("echo\n"))
	if _, err := io.ReadFull(conn, greeting); err != nil {
		b.Fatal(err)
	}
	return conn
}
