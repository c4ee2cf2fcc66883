package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// traffic is the set of servers that scenarios small, bulk and bodies
// share: one Caddy serving Caddy's own reverse_proxy and the tunnel side
// by side, one `inlets http client` and one `inlets tcp client` process,
// and an iperf3 server. The upstream is h.up.
type traffic struct {
	caddy    *caddy
	iperf    int // the iperf3 server's port
	proxy    int // Caddy's reverse_proxy to the upstream
	tunnel   int // the tunnel's site: clients and HTTP visitors
	tcpHTTP  int // TCP tunnel port → the upstream's HTTP port
	tcpIperf int // TCP tunnel port → the iperf3 server

	iperfServer, httpClient, tcpClient *proc
}

// Roles of the processes whose CPU time the harness measures.
const (
	roleLoad       = "load generator"
	roleUpstream   = "upstream"
	roleCaddy      = "Caddy"
	roleHTTPClient = "http client"
	roleTCPClient  = "tcp client"
)

var roles = []string{roleLoad, roleUpstream, roleCaddy, roleHTTPClient, roleTCPClient}

// tunnelHost is the host the HTTP client announces.
const tunnelHost = "app.example.com"

func (h *harness) startTraffic() (*traffic, error) {
	if h.traffic != nil {
		return h.traffic, nil
	}
	e := h.env
	t := &traffic{iperf: freePort(), proxy: freePort(), tunnel: freePort(), tcpHTTP: freePort(), tcpIperf: freePort()}
	var err error
	t.iperfServer, err = e.start("iperf3-server", "iperf3", "-s", "-p", strconv.Itoa(t.iperf), "--forceflush")
	if err != nil {
		return nil, err
	}
	if err := t.iperfServer.waitFor("the iperf3 server", 10*time.Second, func() error {
		b, _ := readFile(t.iperfServer.log)
		if !strings.Contains(b, "Server listening") {
			return errors.New("not listening yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	t.caddy, err = e.startCaddy(caddyfile{
		admin: freePort(), tunnel: t.tunnel, proxy: t.proxy, upstream: h.up.http,
		tcpPorts: []int{t.tcpHTTP, t.tcpIperf},
	})
	if err != nil {
		return nil, err
	}
	if t.httpClient, err = e.httpClientProc(t.tunnel, tunnelHost, h.up); err != nil {
		return nil, err
	}
	if t.tcpClient, err = e.tcpClientProc(loopback(t.tunnel), map[int]int{t.tcpHTTP: h.up.http, t.tcpIperf: t.iperf}); err != nil {
		return nil, err
	}
	if err := t.caddy.waitClients(2, 30*time.Second); err != nil {
		return nil, err
	}
	h.traffic = t
	return t, nil
}

func (h *harness) stopTraffic() {
	if h.traffic == nil {
		return
	}
	t := h.traffic
	for _, p := range []*proc{t.httpClient, t.tcpClient, t.caddy.proc, t.iperfServer} {
		p.stop()
	}
	h.traffic = nil
}

// subject is one way of serving the upstream's /small.
type subject struct {
	name, url string
}

// The ways scenario 1 loads a subject, as the log and the report name
// them.
const (
	toolWrk         = "wrk"
	toolHey         = "hey"
	toolWrkNewConns = "wrk on new connections"
	toolHeyNewConns = "hey on new connections"
)

// loadTime is how long one timed run of tool lasts.
func (p params) loadTime(tool string) time.Duration {
	if tool == toolHey || tool == toolHeyNewConns {
		return p.hey
	}
	return p.wrk
}

// small is scenario 1: small keep-alive requests, with wrk, to the
// upstream served directly, through reverse_proxy, through the HTTP
// tunnel and through the TCP tunnel. hey cross-checks wrk's figures. Then
// small requests each on a new connection, directly and through the TCP
// tunnel: what opening a connection costs, a stream and the client's
// connection to the upstream against the upstream's own accept.
func (h *harness) small(ctx context.Context) error {
	t, err := h.startTraffic()
	if err != nil {
		return err
	}
	direct := subject{subjectDirect, fmt.Sprintf("http://127.0.0.1:%d/small", h.up.http)}
	tcpTunnel := subject{subjectTCPTunnel, fmt.Sprintf("http://127.0.0.1:%d/small", t.tcpHTTP)}
	subjects := []subject{
		direct,
		{subjectProxy, fmt.Sprintf("http://127.0.0.1:%d/small", t.proxy)},
		{subjectHTTPTunnel, fmt.Sprintf("http://127.0.0.1:%d/small", t.tunnel)},
		tcpTunnel,
	}
	newConns := []subject{direct, tcpTunnel}
	for _, s := range subjects {
		if err := checkSmall(s.url); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		logf("warm-up %s", s.name)
		if _, err := runWrk(ctx, s.url, tunnelHost, h.p.warmup); err != nil {
			return err
		}
	}
	for _, s := range newConns {
		logf("warm-up %s, new connections", s.name)
		if _, err := runWrkNewConns(ctx, s.url, tunnelHost, h.p.warmup); err != nil {
			return err
		}
	}
	procs := map[string]*proc{roleUpstream: h.up.proc, roleCaddy: t.caddy.proc, roleHTTPClient: t.httpClient, roleTCPClient: t.tcpClient}
	loads := []struct {
		tool     string
		subjects []subject
		into     map[string][]httpLoad
	}{
		{toolWrk, subjects, h.res.small},
		{toolHey, subjects, h.res.smallHey},
		{toolWrkNewConns, newConns, h.res.smallNewConns},
		{toolHeyNewConns, newConns, h.res.smallHeyNewConns},
	}
	for run := 0; run < h.p.runs; {
		round := make([]map[string]httpLoad, len(loads))
		var disturbed float64
		for i, ld := range loads {
			round[i] = map[string]httpLoad{}
			for _, s := range ld.subjects {
				l, err := h.measureHTTP(ctx, ld.tool, s, procs)
				if err != nil {
					return err
				}
				logf("run %d %s %-13s %8.0f req/s  p50 %s  p99 %s  errors %.0f  requests %.0f  upstream connections %.0f  CPU elsewhere %.1fs",
					run+1, ld.tool, s.name, l.rps, ms(l.p50), ms(l.p99), l.errors(), l.requests, l.upstreamConns, otherCPU(l.cpu).Seconds())
				if ld.tool == toolWrkNewConns || ld.tool == toolHeyNewConns {
					if err := oneConnEach(l); err != nil {
						return fmt.Errorf("%s, %s: %w", s.name, ld.tool, err)
					}
				}
				round[i][s.name] = l
				disturbed = max(disturbed, disturbance(l.cpu, h.p.loadTime(ld.tool)))
			}
		}
		if h.discard("small", run, disturbed) {
			continue
		}
		for i, ld := range loads {
			for name, l := range round[i] {
				ld.into[name] = append(ld.into[name], l)
			}
		}
		run++
	}
	return nil
}

// oneConnEach checks that the upstream accepted a connection for every
// request of a run meant to open one per request: fewer, and some
// requests went on a connection kept alive.
func oneConnEach(l httpLoad) error {
	if l.requests == 0 {
		return errors.New("no request was answered")
	}
	if l.upstreamConns < l.requests {
		return fmt.Errorf("the upstream accepted %.0f connections for %.0f requests: connections were reused", l.upstreamConns, l.requests)
	}
	return nil
}

// measureHTTP runs tool against s, with the CPU time of procs and the
// upstream connections opened meanwhile.
func (h *harness) measureHTTP(ctx context.Context, tool string, s subject, procs map[string]*proc) (httpLoad, error) {
	cpu := newCPUMeter(procs)
	conns, err := h.up.connections()
	if err != nil {
		return httpLoad{}, err
	}
	var l httpLoad
	d := h.p.loadTime(tool)
	switch tool {
	case toolWrk:
		l, err = runWrk(ctx, s.url, tunnelHost, d)
	case toolHey:
		l, err = runHey(ctx, s.url, tunnelHost, d)
	case toolWrkNewConns:
		l, err = runWrkNewConns(ctx, s.url, tunnelHost, d)
	case toolHeyNewConns:
		l, err = runHey(ctx, s.url, tunnelHost, d, "-disable-keepalive")
	default:
		err = fmt.Errorf("no load generator %q", tool)
	}
	if err != nil {
		return l, err
	}
	maps.Copy(l.cpu, cpu.stop())
	after, err := h.up.connections()
	// The count's own connection is kept alive (adminClient, and an
	// upstream without an idle timeout): if the first count opened it,
	// its own answer counted it already.
	l.upstreamConns = after - conns
	return l, err
}

// Rounds whose timed runs lost more than maxDisturbance of the machine's
// CPU to something else are measured again, at most maxDiscarded times
// in a harness run.
const (
	maxDisturbance = 0.05
	maxDiscarded   = 6
)

// disturbance is the share of the machine's CPU that went outside the
// measured processes in a run of d.
func disturbance(cpu map[string]time.Duration, d time.Duration) float64 {
	return otherCPU(cpu).Seconds() / (float64(runtime.NumCPU()) * d.Seconds())
}

// discard decides whether a disturbed round is measured again, and
// records it.
func (h *harness) discard(scenario string, run int, disturbed float64) bool {
	if disturbed <= maxDisturbance || len(h.res.discarded) >= maxDiscarded {
		return false
	}
	logf("%s run %d was disturbed (%.0f%% of the CPU went to other processes): measuring it again", scenario, run+1, disturbed*100)
	h.res.discarded = append(h.res.discarded, fmt.Sprintf("%s run %d (%.0f%%)", scenario, run+1, disturbed*100))
	return true
}

// checkSmall fetches url once and checks the answer is the upstream's, so
// that a fast error page cannot pass for a fast tunnel.
func checkSmall(url string) error {
	_, err := getSmall(benchClient, url)
	return err
}

// getSmall GETs url, the upstream's /small by some way, with the
// tunnel's Host, checks that the answer is the upstream's, and says how
// long it took to the end of the body.
func getSmall(cl *http.Client, url string) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Host = tunnelHost
	start := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	if err := isSmall(resp, body); err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return d, nil
}

// isSmall checks that an answer is the upstream's /small.
func isSmall(resp *http.Response, body []byte) error {
	if resp.StatusCode != http.StatusOK || string(body) != smallBody {
		return fmt.Errorf("HTTP %d %q, want 200 %q", resp.StatusCode, body, smallBody)
	}
	return nil
}

// oneByOne calls do warm+n times, one after the other, and returns the
// times it reports for the last n, in seconds.
func oneByOne(ctx context.Context, n, warm int, do func() (time.Duration, error)) ([]float64, error) {
	took := make([]float64, 0, n)
	for i := range warm + n {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("after %d requests: %w", i, ctx.Err())
		}
		d, err := do()
		if err != nil {
			return nil, err
		}
		if i >= warm {
			took = append(took, d.Seconds())
		}
	}
	return took, nil
}

// bulk is scenario 2: iperf3, 1 and 8 streams, both directions, direct
// and through the TCP tunnel.
func (h *harness) bulk(ctx context.Context) error {
	t, err := h.startTraffic()
	if err != nil {
		return err
	}
	procs := map[string]*proc{roleUpstream: t.iperfServer, roleCaddy: t.caddy.proc, roleTCPClient: t.tcpClient}
	for run := 0; run < h.p.runs; {
		round := map[bulkKey]iperfResult{}
		var disturbed float64
		for _, a := range bulkTests {
			for _, s := range []struct {
				name string
				port int
			}{{subjectDirect, t.iperf}, {subjectTCPTunnel, t.tcpIperf}} {
				cpu := newCPUMeter(procs)
				r, err := runIperf(ctx, s.port, a, h.p.iperf)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", s.name, a, err)
				}
				maps.Copy(r.cpu, cpu.stop())
				logf("run %d iperf3 %-30s %-10s %6.2f Gbit/s  CPU elsewhere %.1fs", run+1, a, s.name, r.bps/1e9, otherCPU(r.cpu).Seconds())
				round[bulkKey{a, s.name}] = r
				disturbed = max(disturbed, disturbance(r.cpu, h.p.iperf))
			}
		}
		if h.discard("bulk", run, disturbed) {
			continue
		}
		for k, r := range round {
			h.res.bulk[k] = append(h.res.bulk[k], r)
		}
		run++
	}
	return nil
}

var bulkTests = []iperfArgs{{1, false}, {1, true}, {8, false}, {8, true}}

// bodies is scenario 3: a large download and upload through the HTTP
// tunnel and through reverse_proxy, every byte checked.
func (h *harness) bodies(ctx context.Context) error {
	t, err := h.startTraffic()
	if err != nil {
		return err
	}
	bases := []subject{
		{subjectProxy, fmt.Sprintf("http://127.0.0.1:%d", t.proxy)},
		{subjectHTTPTunnel, fmt.Sprintf("http://127.0.0.1:%d", t.tunnel)},
	}
	for run := range max(h.p.runs, h.p.bodyRuns) {
		for _, dir := range []string{directionDownload, directionUpload} {
			for _, s := range bases {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var d time.Duration
				var err error
				if dir == directionDownload {
					d, err = download(ctx, s.url, h.p.bodySize)
				} else {
					d, err = upload(ctx, s.url, h.p.bodySize)
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", dir, s.name, err)
				}
				mbps := float64(h.p.bodySize) / 1e6 / d.Seconds()
				logf("run %d %-8s %-13s %7.0f MB/s", run+1, dir, s.name, mbps)
				key := bodyKey{dir, s.name}
				h.res.bodies[key] = append(h.res.bodies[key], mbps)
			}
		}
	}
	return nil
}

// benchClient is the harness's HTTP client for scenario 3 and checks: no
// compression, keep-alive.
var benchClient = &http.Client{
	Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4},
	Timeout:   5 * time.Minute,
}

// download GETs size bytes of the pattern and checks each of them.
func download(ctx context.Context, base string, size int64) (time.Duration, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/blob?size=%d", base, size), nil)
	req.Host = tunnelHost
	start := time.Now()
	resp, err := benchClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	n, err := checkPattern(resp.Body)
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("after %d bytes: %w", n, err)
	}
	if n != size {
		return 0, fmt.Errorf("got %d bytes, want %d", n, size)
	}
	return d, nil
}

// upload POSTs size bytes of the pattern; the upstream checks each of
// them and answers with the count.
func upload(ctx context.Context, base string, size int64) (time.Duration, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/upload", &patternReader{left: size})
	req.Host = tunnelHost
	req.ContentLength = size
	start := time.Now()
	resp, err := benchClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	if string(body) != strconv.FormatInt(size, 10) {
		return 0, fmt.Errorf("the upstream received %s bytes, want %d", body, size)
	}
	return d, nil
}

// patternReader reads left bytes of the pattern.
type patternReader struct {
	off, left int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	at := int(r.off % int64(len(patternBlock)))
	n := copy(p[:min(int64(len(p)), r.left)], patternBlock[at:])
	r.off += int64(n)
	r.left -= int64(n)
	return n, nil
}

func ms(seconds float64) string { return fmt.Sprintf("%.2fms", seconds*1e3) }
