package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/latency"
)

// link is scenario 12: the tunnel over a long link. A relay
// (internal/latency) between the tunnel clients and Caddy's tunnel site
// delays each direction by half the round-trip time; visitors, Caddy and
// the upstream stay on loopback. The baseline, "direct over the link",
// is the visitor reaching the upstream through a relay of the same delays
// in front of it. At each RTT:
//
//   - first byte of a new connection: the time from starting to write
//     (the TLS handshake, then the request) to the answer's first byte,
//     over linkConns connections one after the other, every subject in
//     turn: directly; through the TCP tunnel; through the HTTP tunnel with
//     a new stream each (the upstream closes its connection) and with a
//     stream Caddy keeps from the request before; TLS through caddy-l4's
//     route and the same TLS directly;
//   - one download of linkSize bytes through the TCP tunnel and directly,
//     and 8 at once of an eighth each, with Caddy's heap in use sampled
//     during the tunnel's;
//   - linkSmall small requests on one kept-alive connection through the
//     HTTP tunnel, without and then with a download through the same
//     client running.
func (h *harness) link(ctx context.Context) error {
	e := h.env
	s := linkSetup{tunnel: freePort(), tcp: freePort(), tls: freePort()}
	globals, sites := sniRoute(s.tls)
	c, err := e.startCaddy(caddyfile{admin: freePort(), tunnel: s.tunnel, tcpPorts: []int{s.tcp}, globals: globals, sites: sites})
	if err != nil {
		return err
	}
	defer c.stop()
	s.caddy = c
	for run := range h.p.runs {
		for _, rtt := range h.p.linkRTTs {
			r, err := h.linkRun(ctx, s, rtt)
			if err != nil {
				return fmt.Errorf("RTT %s: %w", rtt, err)
			}
			logf("run %d RTT %s: first byte p50 direct %s, TCP tunnel %s, HTTP tunnel %s (pooled stream %s), TLS direct %s, passthrough %s",
				run+1, rtt, ms(median(r.firstByte[subjectDirect])), ms(median(r.firstByte[subjectTCPTunnel])),
				ms(median(r.firstByte[subjectHTTPNewStream])), ms(median(r.firstByte[subjectHTTPPooled])),
				ms(median(r.firstByte[subjectDirectTLS])), ms(median(r.firstByte[subjectPassthrough])))
			logf("run %d RTT %s: one download %.1f MB/s (direct %.1f), 8 at once %.1f MB/s (direct %.1f), Caddy's heap at most %s / %s; small p50 %s, p99 %s with a download of %.1f MB/s (without: %s, %s)",
				run+1, rtt, r.download[subjectTCPTunnel], r.download[subjectDirect], r.downloads[subjectTCPTunnel], r.downloads[subjectDirect],
				mib(r.heapOne), mib(r.heapEight), ms(median(r.loaded)), ms(quantile(r.loaded, 0.99)), r.loadRate,
				ms(median(r.idle)), ms(quantile(r.idle, 0.99)))
			h.res.link[rtt] = append(h.res.link[rtt], r)
		}
	}
	return nil
}

// linkSetup is scenario 12's Caddy and its ports: the tunnel's site, a
// TCP tunnel port and the port of the TLS passthrough route.
type linkSetup struct {
	caddy            *caddy
	tunnel, tcp, tls int
}

// linkResult is one run of scenario 12 at one RTT.
type linkResult struct {
	firstByte map[string][]float64 // seconds, by subject, each connection's
	// download and downloads are MB/s of one and of 8 at once, by
	// subject (subjectDirect, subjectTCPTunnel).
	download, downloads map[string]float64
	// heapBefore is Caddy's heap in use before the downloads; heapOne and
	// heapEight the most sampled during the tunnel's, in bytes.
	heapBefore, heapOne, heapEight float64
	idle, loaded                   []float64 // seconds: each small request, without and with the download
	loadRate                       float64   // MB/s of the download while the small requests ran
}

// The subjects of scenario 12's first byte, besides subjectDirect and
// subjectTCPTunnel.
const (
	subjectHTTPNewStream = "HTTP tunnel, new stream"
	subjectHTTPPooled    = "HTTP tunnel, pooled stream"
	subjectDirectTLS     = "direct TLS"
	subjectPassthrough   = "TLS passthrough"
)

// freshHost is the second host of scenario 12's HTTP client, whose
// requests each need a new stream.
const freshHost = "fresh.example.com"

// linkTransferTimeout bounds each download of scenario 12.
const linkTransferTimeout = 5 * time.Minute

// linkRun measures scenario 12 at one RTT, with relays and client
// processes of its own.
func (h *harness) linkRun(ctx context.Context, s linkSetup, rtt time.Duration) (linkResult, error) {
	r := linkResult{firstByte: map[string][]float64{}, download: map[string]float64{}, downloads: map[string]float64{}}
	e := h.env
	var relays []*latency.Relay
	defer func() {
		for _, rl := range relays {
			rl.Close()
		}
	}()
	relay := func(target string) (string, error) {
		rl, err := latency.Start(target, rtt/2, rtt/2)
		if err != nil {
			return "", err
		}
		relays = append(relays, rl)
		return rl.Addr(), nil
	}
	toCaddy, err := relay(loopback(s.tunnel))
	if err != nil {
		return r, err
	}
	toHTTP, err := relay(loopback(h.up.http))
	if err != nil {
		return r, err
	}
	toHTTPS, err := relay(loopback(h.up.https))
	if err != nil {
		return r, err
	}

	var clients []*proc
	defer func() {
		for _, p := range clients {
			p.stop()
		}
		// The next RTT's clients are counted alone.
		s.caddy.waitClients(0, 20*time.Second)
	}()
	httpClient, err := e.httpClientProcAs(toCaddy, e.token, h.up, tunnelHost, freshHost)
	if err != nil {
		return r, err
	}
	clients = append(clients, httpClient)
	tcpClient, err := e.tcpClientProc(toCaddy, map[int]int{s.tcp: h.up.http}, "--sni", fmt.Sprintf("%s=%d", tlsName, h.up.https))
	if err != nil {
		return r, err
	}
	clients = append(clients, tcpClient)
	if err := s.caddy.waitClients(2, 30*time.Second); err != nil {
		return r, err
	}

	if err := h.linkFirstBytes(ctx, s, toHTTP, toHTTPS, r.firstByte); err != nil {
		return r, err
	}
	if err := h.linkDownloads(ctx, s, toHTTP, &r); err != nil {
		return r, err
	}
	r.idle, r.loaded, r.loadRate, err = h.linkSmallUnderLoad(ctx, s)
	return r, err
}

// firstByteSubject is one way of reaching the upstream in scenario 12's
// first byte: a new connection to addr each time, TLS or not, carrying
// request; upstreamConns is how many connections the upstream's HTTP
// port must accept for each (its TLS port's are not counted).
type firstByteSubject struct {
	name, addr, request string
	tls                 bool
	upstreamConns       float64
}

// linkFirstBytes times h.p.linkConns new connections of each subject,
// the subjects in turn, into into.
func (h *harness) linkFirstBytes(ctx context.Context, s linkSetup, toHTTP, toHTTPS string, into map[string][]float64) error {
	get := func(host, path string) string {
		return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	}
	small := get(tunnelHost, "/small")
	subjects := []firstByteSubject{
		{subjectDirect, toHTTP, small, false, 1},
		{subjectTCPTunnel, loopback(s.tcp), small, false, 1},
		// The visitor's Connection: close ends its own connection, not
		// Caddy's to the client: a stream goes back to Caddy's pool (one
		// for each host of a client) unless the upstream closes it, as
		// it does every one of freshHost's.
		{subjectHTTPNewStream, loopback(s.tunnel), get(freshHost, "/small?close"), false, 1},
		{subjectHTTPPooled, loopback(s.tunnel), small, false, 0},
		{subjectDirectTLS, toHTTPS, small, true, 0},
		{subjectPassthrough, loopback(s.tls), small, true, 0},
	}
	// One unmeasured round: the pooled subject's stream is opened then.
	for _, sub := range subjects {
		if _, err := timeFirstByte(sub); err != nil {
			return fmt.Errorf("%s: %w", sub.name, err)
		}
	}
	// The count's own connection is kept alive from here on.
	if _, err := h.up.connections(); err != nil {
		return err
	}
	opened := map[string]float64{}
	for range h.p.linkConns {
		for _, sub := range subjects {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			before, err := h.up.connections()
			if err != nil {
				return err
			}
			d, err := timeFirstByte(sub)
			if err != nil {
				return fmt.Errorf("%s: %w", sub.name, err)
			}
			after, err := h.up.connections()
			if err != nil {
				return err
			}
			opened[sub.name] += after - before
			into[sub.name] = append(into[sub.name], d.Seconds())
		}
	}
	for _, sub := range subjects {
		if want := sub.upstreamConns * float64(h.p.linkConns); opened[sub.name] != want {
			return fmt.Errorf("%s: the upstream accepted %.0f connections for %d requests, want %.0f", sub.name, opened[sub.name], h.p.linkConns, want)
		}
	}
	return nil
}

// firstByteTimeout bounds each connection of scenario 12's first byte.
const firstByteTimeout = 10 * time.Second

// timeFirstByte connects to s.addr, then times from the start of the TLS
// handshake (if s.tls) or of the request until the answer's first byte.
// It reads the answer to its end and checks it is the upstream's /small,
// over TLS with the upstream's own certificate.
func timeFirstByte(s firstByteSubject) (time.Duration, error) {
	raw, err := net.DialTimeout("tcp", s.addr, firstByteTimeout)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(firstByteTimeout))
	conn := raw
	start := time.Now()
	if s.tls {
		tc := tls.Client(raw, &tls.Config{ServerName: tlsName, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			return 0, fmt.Errorf("TLS handshake: %w", err)
		}
		if certs := tc.ConnectionState().PeerCertificates; len(certs) == 0 || certs[0].Subject.CommonName != tlsName {
			return 0, fmt.Errorf("%s did not present the upstream's certificate for %s", s.addr, tlsName)
		}
		conn = tc
	}
	if _, err := io.WriteString(conn, s.request); err != nil {
		return 0, err
	}
	br := bufio.NewReader(conn)
	if _, err := br.Peek(1); err != nil {
		return 0, fmt.Errorf("waiting for the answer: %w", err)
	}
	d := time.Since(start)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return d, isSmall(resp, body)
}

// linkDownloads times one download of h.p.linkSize and 8 at once of an
// eighth each, directly and through the TCP tunnel, each on a new
// connection.
func (h *harness) linkDownloads(ctx context.Context, s linkSetup, toHTTP string, r *linkResult) error {
	var err error
	if r.heapBefore, err = s.caddy.metric("go_memstats_heap_inuse_bytes"); err != nil {
		return err
	}
	for _, n := range []int{1, 8} {
		mbpsOf, heapAt := r.download, &r.heapOne
		if n > 1 {
			mbpsOf, heapAt = r.downloads, &r.heapEight
		}
		for _, sub := range []subject{{subjectDirect, "http://" + toHTTP}, {subjectTCPTunnel, "http://" + loopback(s.tcp)}} {
			var heap func() float64
			if sub.name == subjectTCPTunnel {
				heap = s.caddy.watchHeap()
			}
			mbps, err := downloadsAtOnce(ctx, sub.url, n, h.p.linkSize/int64(n))
			if heap != nil {
				*heapAt = heap()
			}
			if err != nil {
				return fmt.Errorf("%d download(s), %s: %w", n, sub.name, err)
			}
			mbpsOf[sub.name] = mbps
		}
	}
	return nil
}

// downloadsAtOnce runs n downloads of size bytes from base at once, each
// on a new connection and every byte checked, and returns the MB/s of
// all of them together.
func downloadsAtOnce(ctx context.Context, base string, n int, size int64) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, linkTransferTimeout)
	defer cancel()
	benchClient.CloseIdleConnections()
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() { _, errs[i] = download(ctx, base, size) })
	}
	wg.Wait()
	took := time.Since(start)
	benchClient.CloseIdleConnections()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(size) * float64(n) / 1e6 / took.Seconds(), nil
}

// linkSmallUnderLoad times h.p.linkSmall GET /small on one kept-alive
// connection through the HTTP tunnel, then as many again while a
// download through the same client runs, and that download's rate
// meanwhile.
func (h *harness) linkSmallUnderLoad(ctx context.Context, s linkSetup) (idle, loaded []float64, rate float64, err error) {
	site := "http://" + loopback(s.tunnel)
	if idle, err = smallOneByOne(ctx, site, h.p.linkSmall); err != nil {
		return nil, nil, 0, fmt.Errorf("small requests: %w", err)
	}

	// A download that lasts until it is cancelled: far larger than the
	// link carries in the time.
	dlCtx, cancel := context.WithTimeout(ctx, linkTransferTimeout)
	defer cancel()
	var got atomic.Int64
	dlErr := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(dlCtx, http.MethodGet, site+"/blob?size=1000000000000", nil)
		req.Host = tunnelHost
		resp, err := benchClient.Do(req)
		if err != nil {
			dlErr <- err
			return
		}
		defer resp.Body.Close()
		_, err = checkPattern(io.TeeReader(resp.Body, countWriter{&got}))
		dlErr <- err
	}()
	if err := waitBytes(&got, 1e6, 30*time.Second, dlErr); err != nil {
		return nil, nil, 0, fmt.Errorf("the download: %w", err)
	}
	from, start := got.Load(), time.Now()
	loaded, err = smallOneByOne(ctx, site, h.p.linkSmall)
	rate = float64(got.Load()-from) / 1e6 / time.Since(start).Seconds()
	select {
	case dlErr := <-dlErr:
		return nil, nil, 0, fmt.Errorf("the download ended while the small requests ran: %v", dlErr)
	default:
	}
	cancel()
	if dlErr := <-dlErr; !errors.Is(dlErr, context.Canceled) {
		return nil, nil, 0, fmt.Errorf("the download: %w", dlErr)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("small requests during the download: %w", err)
	}
	return idle, loaded, rate, nil
}

// countWriter adds what is written to it to n.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// waitBytes polls n every 10ms until it reaches want, the transfer ends
// (with the error it sends on ended) or timeout passes.
func waitBytes(n *atomic.Int64, want int64, timeout time.Duration, ended <-chan error) error {
	deadline := time.Now().Add(timeout)
	for n.Load() < want {
		select {
		case err := <-ended:
			return fmt.Errorf("ended after %d bytes: %v", n.Load(), err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d bytes after %s, want %d", n.Load(), timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// smallOneByOne sends n GET /small to site (with the tunnel's Host) one
// after the other on one kept-alive connection, after an unmeasured one
// that opens it, and returns each one's time in seconds.
func smallOneByOne(ctx context.Context, site string, n int) ([]float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return oneByOne(ctx, n, 1, func() (time.Duration, error) { return getSmall(cl, site+"/small") })
}

// writeLink is scenario 12's section of the report: a table for each RTT.
func (r *results) writeLink(w writer) {
	if len(r.link) == 0 {
		return
	}
	rtts := slices.Sorted(maps.Keys(r.link))
	p := r.params
	p50 := namedStat{"p50", median}
	p90 := namedStat{"p90", func(xs []float64) float64 { return quantile(xs, 0.9) }}
	p99 := namedStat{"p99", func(xs []float64) float64 { return quantile(xs, 0.99) }}
	w("\n## 12. A long link\n\nThe tunnel clients reach Caddy through a relay that delays each direction by half the round-trip time (RTT), "+
		"chunk by chunk and pipelined, with no bandwidth limit (`internal/latency`); visitors, Caddy and the upstream stay on loopback. "+
		"The baseline, direct over the link, is the visitor reaching the upstream through a relay of the same delays in front of it. "+
		"The relay accepts and dials at once, so a connection's own TCP handshake costs nothing: direct, a request's first byte comes one RTT after it is written. "+
		"The relay ends each TCP connection on its side, so no TCP window spans the link: direct downloads are bounded by the CPU and the relay's %d MiB in flight per direction "+
		"(%.1f GB/s at %s each way), not by a receive window per RTT as a TCP connection over a real link would be, and their ratios say how far the tunnel is from the link's own speed, not from TCP's. "+
		"Nor does a download queue anything on the link, which has no bandwidth limit: small requests beside one measure only what the client and Caddy add.\n\n",
		latency.MaxInFlight>>20, float64(latency.MaxInFlight)/1e9/(p.linkRTTs[0]/2).Seconds(), p.linkRTTs[0]/2)
	w("- **First byte**: from starting to write (the TLS handshake, then the request) to the answer's first byte, on %d new connections one after the other, "+
		"the subjects in turn, after one unmeasured round: GET /small with `Connection: close`, directly and through the TCP tunnel "+
		"(an `inlets tcp client` process; the upstream closes each connection); through the HTTP tunnel (an `inlets http client` process) "+
		"with a new stream each (the upstream answers `Connection: close`, so Caddy cannot keep it) and on the stream Caddy kept from the request before; "+
		"TLS (handshake, then the GET) through caddy-l4's passthrough route (the same tcp client, `--sni`) and to the upstream's TLS port directly. "+
		"The upstream's count of accepted connections is checked: one per request for each new stream, none for the pooled one.\n", p.linkConns)
	w("- **Downloads**: GET /blob of %s through the TCP tunnel and directly, every byte checked, each on a new connection; then 8 at once of an eighth each (MB/s of all together). "+
		"Caddy's heap in use (`go_memstats_heap_inuse_bytes` from its /metrics, no collection forced) sampled every %s during the tunnel's, the largest sample.\n", mb(p.linkSize), heapEvery)
	w("- **Small requests under load**: %d GET /small one after the other on one kept-alive connection through the HTTP tunnel, "+
		"without and then with a download through the same client session running (the baseline here is the same requests without it).\n", p.linkSmall)
	for _, rtt := range rtts {
		rs := r.link[rtt]
		fb := func(sub string, stat func([]float64) float64) []float64 {
			return pick(rs, func(x linkResult) float64 { return stat(x.firstByte[sub]) })
		}
		w("\n### RTT %s (%s each way)\n\n", rtt, rtt/2)
		w("| figure | baseline | tunnel | tunnel / baseline | tunnel, each run |\n|---|---|---|---|---|\n")
		for _, sub := range []struct{ name, base string }{
			{subjectTCPTunnel, subjectDirect}, {subjectHTTPNewStream, subjectDirect}, {subjectHTTPPooled, subjectDirect}, {subjectPassthrough, subjectDirectTLS},
		} {
			for _, stat := range []namedStat{p50, p90} {
				linkRow(w, fmt.Sprintf("first byte, %s, %s (baseline: %s)", sub.name, stat.name, sub.base), fb(sub.base, stat.f), fb(sub.name, stat.f), msFormat, 1e3)
			}
		}
		mbps := func(f func(linkResult) map[string]float64, sub string) []float64 {
			return pick(rs, func(x linkResult) float64 { return f(x)[sub] })
		}
		one := func(x linkResult) map[string]float64 { return x.download }
		eight := func(x linkResult) map[string]float64 { return x.downloads }
		linkRow(w, fmt.Sprintf("one download of %s, MB/s (baseline: direct)", mb(p.linkSize)), mbps(one, subjectDirect), mbps(one, subjectTCPTunnel), "%.1f", 1)
		linkRow(w, fmt.Sprintf("8 downloads of %s at once, MB/s in all (baseline: direct)", mb(p.linkSize/8)), mbps(eight, subjectDirect), mbps(eight, subjectTCPTunnel), "%.1f", 1)
		before := pick(rs, func(x linkResult) float64 { return x.heapBefore })
		linkRow(w, "Caddy's heap in use, most during the one download (baseline: before the downloads)", before, pick(rs, func(x linkResult) float64 { return x.heapOne }), mibFormat, 1.0/(1<<20))
		linkRow(w, "Caddy's heap in use, most during the 8 downloads (baseline: before the downloads)", before, pick(rs, func(x linkResult) float64 { return x.heapEight }), mibFormat, 1.0/(1<<20))
		for _, stat := range []namedStat{p50, p99} {
			linkRow(w, fmt.Sprintf("small request through the HTTP tunnel during a download, %s (baseline: no download)", stat.name),
				pick(rs, func(x linkResult) float64 { return stat.f(x.idle) }),
				pick(rs, func(x linkResult) float64 { return stat.f(x.loaded) }), msFormat, 1e3)
		}
		linkRow(w, "that download meanwhile, MB/s", nil, pick(rs, func(x linkResult) float64 { return x.loadRate }), "%.1f", 1)
	}
}

// linkTargets checks issue 17's targets for a long link: at RTT 50 ms, a
// new connection's first byte within 1.1 × direct's, one download at 100
// MB/s and 8 at 400 MB/s; at RTT 200 ms, one at 40 MB/s.
func (r *results) linkTargets() []target {
	var ts []target
	for _, rtt := range slices.Sorted(maps.Keys(r.link)) {
		rs := r.link[rtt]
		firstByte := func(sub string) float64 {
			return median(pick(rs, func(x linkResult) float64 { return median(x.firstByte[sub]) }))
		}
		rate := func(f func(linkResult) float64) float64 { return median(pick(rs, f)) }
		one := rate(func(x linkResult) float64 { return x.download[subjectTCPTunnel] })
		switch rtt {
		case 50 * time.Millisecond:
			for _, sub := range []struct{ name, base string }{
				{subjectTCPTunnel, subjectDirect}, {subjectHTTPNewStream, subjectDirect}, {subjectPassthrough, subjectDirectTLS},
			} {
				t, d := firstByte(sub.name), firstByte(sub.base)
				ts = append(ts, target{fmt.Sprintf("RTT 50ms: first byte of a new connection, %s ≤ 1.1 × %s", sub.name, sub.base),
					fmt.Sprintf("%.2f (%.1f vs %.1f ms)", ratio(t, d), t*1e3, d*1e3), t > 0 && ratio(t, d) <= 1.1})
			}
			eight := rate(func(x linkResult) float64 { return x.downloads[subjectTCPTunnel] })
			ts = append(ts,
				target{"RTT 50ms: one download through the TCP tunnel ≥ 100 MB/s", fmt.Sprintf("%.1f MB/s", one), one >= 100},
				target{"RTT 50ms: 8 downloads at once through the TCP tunnel ≥ 400 MB/s", fmt.Sprintf("%.1f MB/s", eight), eight >= 400})
		case 200 * time.Millisecond:
			ts = append(ts, target{"RTT 200ms: one download through the TCP tunnel ≥ 40 MB/s", fmt.Sprintf("%.1f MB/s", one), one >= 40})
		}
	}
	return ts
}

// namedStat is a statistic of a run's samples, as the report names it.
type namedStat struct {
	name string
	f    func([]float64) float64
}

const (
	msFormat  = "%.1f ms"
	mibFormat = "%.1f MiB"
)

// linkRow writes a row of scenario 12's table: the medians over the runs
// of base (nil: the row has no baseline) and tun, in format after
// multiplying by k, their ratio, and each run's tun.
func linkRow(w writer, what string, base, tun []float64, format string, k float64) {
	baseCell, ratioCell := "", ""
	if base != nil {
		baseCell = fmt.Sprintf(format, median(base)*k)
		ratioCell = fmt.Sprintf("**%.2f**", ratio(median(tun), median(base)))
	}
	w("| %s | %s | %s | %s | %s |\n", what, baseCell, fmt.Sprintf(format, median(tun)*k), ratioCell, runs(scale(tun, k), format))
}

// mb is a size in MB (10⁶ bytes).
func mb(size int64) string { return fmt.Sprintf("%g MB", float64(size)/1e6) }
