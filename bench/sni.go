package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// sni is scenario 10: small HTTPS requests to a TLS upstream that
// terminates TLS itself (the harness's upstream on its TLS port, a
// certificate of its own for tlsName), three ways: directly; through
// caddy-l4's listener wrapper on a port Caddy shares with a site of its
// own, whose route passes tlsName to the inlets handler and a client
// announcing `--sni tlsName`; and through a TCP tunnel on a port of its
// own. wrk and hey send no server name to 127.0.0.1, so the load is the
// harness's own: sniWorkers keep-alive connections, each sending GET
// /small one after the other, every one dialling 127.0.0.1 with the
// server name tlsName.
func (h *harness) sni(ctx context.Context) error {
	e := h.env
	tunnelPort, shared, tcpPublic := freePort(), freePort(), freePort()
	globals, sites := sniRoute(shared)
	c, err := e.startCaddy(caddyfile{admin: freePort(), tunnel: tunnelPort, tcpPorts: []int{tcpPublic}, globals: globals, sites: sites})
	if err != nil {
		return err
	}
	defer c.stop()
	client, err := e.tcpClientProc(loopback(tunnelPort), map[int]int{tcpPublic: h.up.https}, "--sni", fmt.Sprintf("%s=%d", tlsName, h.up.https))
	if err != nil {
		return err
	}
	defer client.stop()
	if err := c.waitClients(1, 20*time.Second); err != nil {
		return err
	}
	subjects := []struct{ name, addr string }{
		{subjectDirect, fmt.Sprintf("127.0.0.1:%d", h.up.https)},
		{subjectSNIRoute, fmt.Sprintf("127.0.0.1:%d", shared)},
		{subjectTCPTunnel, fmt.Sprintf("127.0.0.1:%d", tcpPublic)},
	}
	for _, s := range subjects {
		// Each answers, with the upstream's own certificate, before
		// anything is timed.
		if err := client.waitFor(s.name, 10*time.Second, func() error { return checkHTTPS(ctx, s.addr) }); err != nil {
			return err
		}
	}
	for run := range h.p.runs {
		for _, s := range subjects {
			l, err := loadHTTPS(ctx, s.addr, h.p.wrk)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			logf("run %d HTTPS %-18s %7.0f req/s  p50 %s  p99 %s  errors %.0f", run+1, s.name, l.rps, ms(l.p50), ms(l.p99), l.errors())
			h.res.sni[s.name] = append(h.res.sni[s.name], l)
		}
	}
	return nil
}

// sniRoute is the config of a port that Caddy shares between a site of
// its own and caddy-l4's route for tlsName, whose TLS connections go to
// the inlets handler: the globals and sites of a caddyfile.
func sniRoute(port int) (globals, sites string) {
	globals = fmt.Sprintf("\tservers 127.0.0.1:%d {\n\t\tlistener_wrappers {\n\t\t\tlayer4 {\n\t\t\t\t@pass tls sni %s\n\t\t\t\troute @pass {\n\t\t\t\t\tinlets\n\t\t\t\t}\n\t\t\t}\n\t\t\ttls\n\t\t}\n\t}\n", port, tlsName)
	sites = fmt.Sprintf("https://own.bench.test:%d {\n\tbind 127.0.0.1\n\ttls internal\n\trespond \"caddy's own site\"\n}\n", port)
	return globals, sites
}

// subjectSNIRoute is the TLS passthrough route of scenario 10.
const subjectSNIRoute = "SNI route (caddy-l4)"

// sniWorkers is the connections of scenario 10's load.
const sniWorkers = 32

// httpsClient dials addr whatever the URL says, with the server name
// tlsName, trusting any certificate: the certificate is checked once by
// checkHTTPS.
func httpsClient(addr string, conns int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		TLSClientConfig:     &tls.Config{ServerName: tlsName, InsecureSkipVerify: true},
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
	}}
}

// checkHTTPS GETs /small through addr and checks the body and that the
// certificate is the upstream's own.
func checkHTTPS(ctx context.Context, addr string) error {
	cl := httpsClient(addr, 1)
	defer cl.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+tlsName+"/small", nil)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != tlsName {
		return fmt.Errorf("%s did not present the upstream's certificate for %s", addr, tlsName)
	}
	if string(body) != smallBody {
		return fmt.Errorf("GET /small through %s: %q", addr, body)
	}
	return nil
}

// loadHTTPS sends GET /small through addr from sniWorkers connections for
// d, and measures requests/s and latency percentiles.
func loadHTTPS(ctx context.Context, addr string, d time.Duration) (httpLoad, error) {
	cl := httpsClient(addr, sniWorkers)
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu   sync.Mutex
		lat  []float64
		errs float64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range sniWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			var bad float64
			for ctx.Err() == nil {
				t := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+tlsName+"/small", nil)
				resp, err := cl.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						bad++
					}
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || string(body) != smallBody {
					bad++
					continue
				}
				mine = append(mine, time.Since(t).Seconds())
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if len(lat) == 0 {
		return httpLoad{}, fmt.Errorf("no request through %s succeeded (%.0f errors)", addr, errs)
	}
	slices.Sort(lat)
	return httpLoad{rps: float64(len(lat)) / elapsed, p50: lat[len(lat)/2], p99: quantile(lat, 0.99), sockErrs: errs}, nil
}

// writeSNI is scenario 10's section of the report.
func (r *results) writeSNI(w writer) {
	if len(r.sni) == 0 {
		return
	}
	w("\n## 10. TLS passthrough by server name\n\nSmall HTTPS requests (GET /small, 13 bytes) to a TLS upstream that terminates TLS itself (the harness's "+
		"upstream, a certificate of its own), from %d keep-alive connections of the harness's own load generator for %ds (wrk and hey send no "+
		"server name to an IP address): directly; through caddy-l4's listener wrapper on a port Caddy shares with a site of its own, "+
		"whose `tls sni` route ends in the inlets handler and an `inlets tcp client --sni` process; and through a TCP tunnel "+
		"on a port of its own, through the same client.\n\n", sniWorkers, int(r.params.wrk.Seconds()))
	w("| subject | requests/s | p50 | p99 | errors | runs (req/s) |\n|---|---|---|---|---|---|\n")
	for _, s := range []string{subjectDirect, subjectSNIRoute, subjectTCPTunnel} {
		rps, p50, p99, errs := r.smallMedians(r.sni, s)
		w("| %s | %.0f | %s | %s | %.0f | %s |\n", s, rps, ms(p50), ms(p99), errs, runs(pick(r.sni[s], func(l httpLoad) float64 { return l.rps }), "%.0f"))
	}
}

// sniTargets are issue 12's targets for TLS passthrough.
func (r *results) sniTargets() []target {
	if len(r.sni) == 0 {
		return nil
	}
	d, _, _, _ := r.smallMedians(r.sni, subjectDirect)
	s, _, _, _ := r.smallMedians(r.sni, subjectSNIRoute)
	t, _, _, _ := r.smallMedians(r.sni, subjectTCPTunnel)
	return []target{
		{"SNI route ≥ 0.35 × direct HTTPS requests/s", fmt.Sprintf("%.2f (%.0f vs %.0f req/s)", ratio(s, d), s, d), ratio(s, d) >= 0.35},
		{"SNI route within 10% of the TCP tunnel on its own port", fmt.Sprintf("%.2f (%.0f vs %.0f req/s)", ratio(s, t), s, t), ratio(s, t) >= 0.9},
	}
}
