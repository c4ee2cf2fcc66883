package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// tenants is scenario 8: what the number of configured tunnels costs.
// At each step a fresh Caddy runs a JSON config with N tunnels (tK, with
// a token of its own and the host tK.example.com) and one inlets handler
// serving both planes. Measured: a full reload of that config (POST
// /load), creating and deleting one more tunnel through the admin API
// (each a full reload too), Caddy's heap per tunnel, and the latency of
// GET /status with a tunnel's token, which authenticates it with one map
// lookup whatever N. Then small requests through one tunnel's client with
// otherTunnels more tunnels configured, against the same with none, as
// scenario 1 measures them.
func (h *harness) tenants(ctx context.Context) error {
	for run := range h.p.runs {
		var steps []tenantStep
		for _, n := range h.p.tunnels {
			s, err := h.tenantRun(ctx, n)
			if err != nil {
				return fmt.Errorf("%d tunnels: %w", n, err)
			}
			logf("run %d %5d tunnels: reload %s, create %s, delete %s; heap in use %s (%s after the changes); /status p50 %.0f µs, p99 %.0f µs",
				run+1, n, s.reload.Round(time.Millisecond), s.create.Round(time.Millisecond), s.remove.Round(time.Millisecond),
				mib(s.heap), mib(s.heapAfter), s.authP50, s.authP99)
			steps = append(steps, s)
		}
		h.res.tenants = append(h.res.tenants, steps)
	}
	return h.tenantTraffic(ctx)
}

// tenantStep is one step of scenario 8.
type tenantStep struct {
	tunnels                int
	reload, create, remove time.Duration // medians of configChanges each
	heap                   float64       // bytes in use after Caddy started
	heapAfter              float64       // and after the reloads, creates and deletes
	authP50, authP99       float64       // µs, GET /status with a tunnel's token
}

// tenantConfig is scenario 8's Caddy: an admin endpoint, one inlets
// handler serving both planes on port, the tunnels t0 … t(tunnels-1)
// and, if withApp, tunnel app for tunnelHost.
type tenantConfig struct {
	admin, port, tunnels int
	withApp              bool
}

// appTunnel is the tunnel whose client serves tunnelHost.
const appTunnel = "app"

func (e *env) tenantJSON(c tenantConfig) ([]byte, error) {
	tunnels := make(map[string]*registry.Tunnel, c.tunnels+1)
	for i := range c.tunnels {
		name := fmt.Sprintf("t%d", i)
		tunnels[name] = e.tunnelOf(name, name+".example.com")
	}
	if c.withApp {
		tunnels[appTunnel] = e.tunnelOf(appTunnel, tunnelHost)
	}
	// The server's own token and limits are those of the Caddyfile of
	// the other scenarios (caddyfile.String).
	return json.Marshal(map[string]any{
		"admin": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", c.admin), "config": map[string]any{"persist": false}},
		"apps": map[string]any{
			"http": map[string]any{
				"grace_period": "1s",
				"servers": map[string]any{"tunnel": map[string]any{
					"listen":          []string{fmt.Sprintf("127.0.0.1:%d", c.port)},
					"automatic_https": map[string]any{"disable": true},
					"routes": []any{map[string]any{"handle": []any{map[string]any{
						"handler":                    "inlets",
						"tokens":                     []string{"{env.INLETS_TOKEN}"},
						"max_handshakes_per_address": 100000,
						"max_streams_per_client":     100000,
					}}}},
				}},
			},
			"inlets": &app.App{Tunnels: tunnels},
		},
	})
}

// tunnelToken is the token of the named tunnel in this harness run.
func (e *env) tunnelToken(name string) string { return e.token + "-" + name }

// tunnelOf is the named tunnel with its token's digest, as an operator
// keeps it in the config, serving host.
func (e *env) tunnelOf(name, host string) *registry.Tunnel {
	sum := sha256.Sum256([]byte(e.tunnelToken(name)))
	return &registry.Tunnel{Tokens: []registry.Token{{SHA256: hex.EncodeToString(sum[:])}}, Hosts: []string{host}}
}

// startTenantCaddy runs Caddy on c and waits until its control plane
// takes the token of tunnel probe.
func (e *env) startTenantCaddy(c tenantConfig, probe string) (*caddy, []byte, error) {
	cfg, err := e.tenantJSON(c)
	if err != nil {
		return nil, nil, err
	}
	cd, err := e.startCaddyJSON(c.admin, cfg)
	if err != nil {
		return nil, nil, err
	}
	status := fmt.Sprintf("http://127.0.0.1:%d%s", c.port, tunnel.StatusPath)
	err = cd.waitFor("the control plane", 30*time.Second, func() error {
		_, err := getStatus(adminClient, status, e.tunnelToken(probe))
		return err
	})
	if err != nil {
		cd.stop()
		return nil, nil, err
	}
	return cd, cfg, nil
}

func (h *harness) tenantRun(ctx context.Context, n int) (tenantStep, error) {
	s := tenantStep{tunnels: n}
	port := freePort()
	probe := fmt.Sprintf("t%d", n/2)
	c, cfg, err := h.env.startTenantCaddy(tenantConfig{admin: freePort(), port: port, tunnels: n}, probe)
	if err != nil {
		return s, err
	}
	defer c.stop()
	m, err := c.settledSample(h.p.memorySamples)
	if err != nil {
		return s, err
	}
	s.heap = m.heapInuse

	status := fmt.Sprintf("http://127.0.0.1:%d%s", port, tunnel.StatusPath)
	if s.authP50, s.authP99, err = authLatency(ctx, status, h.env.tunnelToken(probe), h.p.authRequests); err != nil {
		return s, err
	}

	var reloads, creates, removes []float64
	timed := func(into *[]float64, method, path string, body []byte) error {
		start := time.Now()
		if err := c.change(method, path, body); err != nil {
			return err
		}
		*into = append(*into, float64(time.Since(start)))
		return nil
	}
	for range h.p.configChanges {
		if err := timed(&reloads, http.MethodPost, "/load", cfg); err != nil {
			return s, err
		}
	}
	for i := range h.p.configChanges {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		name := fmt.Sprintf("new-%d", i)
		tun, err := json.Marshal(h.env.tunnelOf(name, name+".example.com"))
		if err != nil {
			return s, err
		}
		path := "/config/apps/inlets/tunnels/" + name
		if err := timed(&creates, http.MethodPut, path, tun); err != nil {
			return s, err
		}
		// The new tunnel's token is taken, so the create was done. Polled,
		// on connections of their own: right after a reload, a
		// connection may meet the old server as it closes (an idle
		// keep-alive one gets EOF, a new one was seen reset under load).
		if err := c.waitFor("tunnel "+name+"'s token", 10*time.Second, func() error {
			_, err := getStatus(freshClient, status, h.env.tunnelToken(name))
			return err
		}); err != nil {
			return s, fmt.Errorf("after creating tunnel %s: %w", name, err)
		}
		if err := timed(&removes, http.MethodDelete, path, nil); err != nil {
			return s, err
		}
	}
	// And the config's own tunnels still are.
	if err := c.waitFor("tunnel "+probe+"'s token", 10*time.Second, func() error {
		_, err := getStatus(freshClient, status, h.env.tunnelToken(probe))
		return err
	}); err != nil {
		return s, fmt.Errorf("after the config changes: %w", err)
	}
	s.reload = time.Duration(median(reloads))
	s.create = time.Duration(median(creates))
	s.remove = time.Duration(median(removes))
	m, err = c.settledSample(h.p.memorySamples)
	s.heapAfter = m.heapInuse
	return s, err
}

// freshClient makes a new connection for every request: for requests
// right after a reload.
var freshClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// authLatency times n GETs of the control plane's /status with token, one
// after the other on one keep-alive connection, after an unmeasured tenth
// as many; it returns the median and the 99th percentile in µs.
func authLatency(ctx context.Context, url, token string, n int) (p50, p99 float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	took, err := oneByOne(ctx, n, n/10, func() (time.Duration, error) { return getStatus(cl, url, token) })
	if err != nil {
		return 0, 0, err
	}
	return median(took) * 1e6, quantile(took, 0.99) * 1e6, nil
}

// getStatus GETs the control plane's /status with a bearer token and
// says how long the answer took, which must be 200.
func getStatus(cl *http.Client, url, token string) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, body)
	}
	return d, nil
}

// Subjects of scenario 8's small requests.
const (
	subjectAlone  = "alone"
	subjectOthers = "with other tunnels"
)

// tenantTraffic measures small requests through tunnel app's client
// (an `inlets http client` process) with otherTunnels more tunnels
// configured, against a Caddy with app alone. Both Caddys run at once,
// each with its client, and are measured in turn with wrk, as scenario 1
// does.
func (h *harness) tenantTraffic(ctx context.Context) error {
	subjects := map[string]subject{}
	procs := map[string]map[string]*proc{}
	for _, sub := range []struct {
		name   string
		others int
	}{{subjectAlone, 0}, {subjectOthers, h.p.otherTunnels}} {
		port := freePort()
		c, _, err := h.env.startTenantCaddy(tenantConfig{admin: freePort(), port: port, tunnels: sub.others, withApp: true}, appTunnel)
		if err != nil {
			return err
		}
		defer c.stop()
		cl, err := h.env.httpClientProcAs(loopback(port), h.env.tunnelToken(appTunnel), h.up, tunnelHost)
		if err != nil {
			return err
		}
		defer cl.stop()
		if err := c.waitClients(1, 30*time.Second); err != nil {
			return err
		}
		s := subject{sub.name, fmt.Sprintf("http://127.0.0.1:%d/small", port)}
		if err := checkSmall(s.url); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		subjects[sub.name] = s
		procs[sub.name] = map[string]*proc{roleUpstream: h.up.proc, roleCaddy: c.proc, roleHTTPClient: cl}
	}
	return h.wrkRounds(ctx, "tenants", []string{subjectAlone, subjectOthers}, subjects, procs, h.res.tenantSmall, false, nil)
}

// wrkRounds warms each subject up, then measures small keep-alive
// requests through each in turn, order's order, h.p.runs rounds, each
// into set; a disturbed round is measured again (see discard). With
// noErrors, a run with an error fails the scenario. after, when given,
// runs after each round kept, with its number.
func (h *harness) wrkRounds(ctx context.Context, scenario string, order []string, subjects map[string]subject, procs map[string]map[string]*proc,
	set map[string][]httpLoad, noErrors bool, after func(run int) error) error {
	for _, name := range order {
		logf("warm-up %s", name)
		if _, err := runWrk(ctx, subjects[name].url, tunnelHost, h.p.warmup); err != nil {
			return err
		}
	}
	for run := 0; run < h.p.runs; {
		round := map[string]httpLoad{}
		var disturbed float64
		for _, name := range order {
			l, err := h.measureHTTP(ctx, toolWrk, subjects[name], procs[name])
			if err != nil {
				return err
			}
			if noErrors && l.errors() > 0 {
				return fmt.Errorf("%s: %.0f errors", name, l.errors())
			}
			logf("run %d wrk %-20s %8.0f req/s  p50 %s  p99 %s  errors %.0f  CPU elsewhere %.1fs",
				run+1, name, l.rps, ms(l.p50), ms(l.p99), l.errors(), otherCPU(l.cpu).Seconds())
			round[name] = l
			disturbed = max(disturbed, disturbance(l.cpu, h.p.wrk))
		}
		if h.discard(scenario, run, disturbed) {
			continue
		}
		for name, l := range round {
			set[name] = append(set[name], l)
		}
		if after != nil {
			if err := after(run); err != nil {
				return err
			}
		}
		run++
	}
	return nil
}

// tenantMedians is the median over runs of each step's figures, with the
// heap per tunnel against the first step, its median over runs.
func (r *results) tenantMedians() (steps []tenantStep, perTunnel []float64) {
	if len(r.tenants) == 0 {
		return nil, nil
	}
	for i := range r.tenants[0] {
		col := make([]tenantStep, len(r.tenants))
		per := make([]float64, len(r.tenants))
		for run, got := range r.tenants {
			col[run] = got[i]
			if i > 0 {
				per[run] = (got[i].heap - got[0].heap) / float64(got[i].tunnels-got[0].tunnels)
			}
		}
		d := func(f func(tenantStep) time.Duration) time.Duration {
			return time.Duration(median(pick(col, func(s tenantStep) float64 { return float64(f(s)) })))
		}
		f := func(g func(tenantStep) float64) float64 { return median(pick(col, g)) }
		steps = append(steps, tenantStep{
			tunnels:   col[0].tunnels,
			reload:    d(func(s tenantStep) time.Duration { return s.reload }),
			create:    d(func(s tenantStep) time.Duration { return s.create }),
			remove:    d(func(s tenantStep) time.Duration { return s.remove }),
			heap:      f(func(s tenantStep) float64 { return s.heap }),
			heapAfter: f(func(s tenantStep) float64 { return s.heapAfter }),
			authP50:   f(func(s tenantStep) float64 { return s.authP50 }),
			authP99:   f(func(s tenantStep) float64 { return s.authP99 }),
		})
		perTunnel = append(perTunnel, median(per))
	}
	return steps, perTunnel
}

func (r *results) writeTenants(w writer) {
	steps, perTunnel := r.tenantMedians()
	if len(steps) == 0 {
		return
	}
	p, first := r.params, steps[0]
	w("\n## 8. Tunnels\n\nA fresh Caddy per step, on a JSON config: one `inlets` handler serving both planes, and N tunnels in `apps.inlets.tunnels`, "+
		"each with its token's SHA-256 and a host of its own (tK, `tK.example.com`). "+
		"*Reload* is a POST /load of the same config, forced (`Cache-Control: must-revalidate`), timed until the admin API answers: once the new config has started and the old one stopped. "+
		"*Create* is a PUT of one more tunnel at `/config/apps/inlets/tunnels/<name>`, *delete* the DELETE of it; each is a full reload of the config with it, and after each create the new tunnel's token is checked to be taken. "+
		"Median of %d of each. *Heap in use* is Caddy's `go_memstats_heap_inuse_bytes` after a forced collection (median of %d samples), once Caddy has started and again after the reloads, creates and deletes; "+
		"*per tunnel* is (heap at N − heap at %d) / (N − %d), its median over runs. "+
		"*/status* is the latency of %d GETs of the control plane's `/status` with tunnel tN/2's token, one after another on one keep-alive connection from the harness, "+
		"after %d unmeasured: each hashes the token and finds its tunnel with one map lookup, then answers that tunnel's status (no client); the last column is its median divided by that at %d.\n\n",
		p.configChanges, p.memorySamples, first.tunnels, first.tunnels, p.authRequests, p.authRequests/10, first.tunnels)
	w("| tunnels | reload | create | delete | heap in use | after the changes | heap per tunnel | /status p50 | /status p99 | p50 / at %d |\n|---|---|---|---|---|---|---|---|---|---|\n", first.tunnels)
	for i, s := range steps {
		per := "–"
		if i > 0 {
			per = fmt.Sprintf("%.0f B", perTunnel[i])
		}
		w("| %d | %s | %s | %s | %s | %s | %s | %.0f µs | %.0f µs | **%.2f** |\n", s.tunnels,
			s.reload.Round(100*time.Microsecond), s.create.Round(100*time.Microsecond), s.remove.Round(100*time.Microsecond),
			mib(s.heap), mib(s.heapAfter), per, s.authP50, s.authP99, ratio(s.authP50, first.authP50))
	}
	if len(r.tenantSmall) == 0 {
		return
	}
	w("\nSmall requests through one tunnel, as in scenario 1: `wrk -t %d -c 50 -d %s --latency` of the upstream's `/small` through the HTTP tunnel, "+
		"served by an `inlets http client` process holding the token of tunnel `app` (host `%s`), on a Caddy where `app` is the only tunnel and on one with %d other tunnels configured. "+
		"Both Caddys, each with its client, run side by side and are measured in turn, after a %s warm-up each. Caddy's CPU per request is from /proc/PID/stat around each run.\n\n",
		wrkThreads, p.wrk, tunnelHost, p.otherTunnels, p.warmup)
	w("| configured tunnels | requests/s | p50 | p99 | Caddy CPU per request | errors | requests/s of each run |\n|---|---|---|---|---|---|---|\n")
	for _, s := range []struct {
		name    string
		tunnels int
	}{{subjectAlone, 1}, {subjectOthers, 1 + p.otherTunnels}} {
		ls := r.tenantSmall[s.name]
		rps, p50, p99, errs := r.smallMedians(r.tenantSmall, s.name)
		cpu := median(pick(ls, func(l httpLoad) float64 { return float64(l.cpu[roleCaddy].Microseconds()) / l.requests }))
		w("| %d | %.0f | %s | %s | %.1f µs | %.0f | %s |\n", s.tunnels, rps, ms(p50), ms(p99), cpu, errs, runs(pick(ls, func(l httpLoad) float64 { return l.rps }), "%.0f"))
	}
	arps, _, ap99, _ := r.smallMedians(r.tenantSmall, subjectAlone)
	orps, _, op99, _ := r.smallMedians(r.tenantSmall, subjectOthers)
	w("\nRatios, with %d other tunnels / alone: requests/s **%.2f**, p99 %.2f.\n", p.otherTunnels, ratio(orps, arps), ratio(op99, ap99))
}

// tenantTargets are scenario 8's: authenticating a tunnel's token costs
// the same whatever the number of tunnels (one map lookup; within 20%,
// for noise), and other tunnels do not slow a tunnel's requests.
func (r *results) tenantTargets() []target {
	var ts []target
	if steps, _ := r.tenantMedians(); len(steps) >= 2 {
		first, last := steps[0], steps[len(steps)-1]
		q := ratio(last.authP50, first.authP50)
		ts = append(ts, target{fmt.Sprintf("authenticating a tunnel's token at %d tunnels ≤ 1.2 × the time at %d (median /status latency)", last.tunnels, first.tunnels),
			fmt.Sprintf("%.2f (%.0f vs %.0f µs)", q, last.authP50, first.authP50), q <= 1.2})
	}
	if len(r.tenantSmall) > 0 {
		arps, _, _, _ := r.smallMedians(r.tenantSmall, subjectAlone)
		orps, _, _, _ := r.smallMedians(r.tenantSmall, subjectOthers)
		q := ratio(orps, arps)
		ts = append(ts, target{fmt.Sprintf("small requests through a tunnel with %d other tunnels configured ≥ 0.9 × requests/s with none", r.params.otherTunnels),
			fmt.Sprintf("%.2f (%.0f vs %.0f req/s)", q, orps, arps), q >= 0.9})
	}
	return ts
}
