package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"

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
