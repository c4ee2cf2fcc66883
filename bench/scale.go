package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// scale is scenario 7: what connecting and disconnecting clients costs
// Caddy as their number grows, and whether the metric series of the hosts
// they announced go with them. At each step a fresh Caddy takes N clients
// at once (client-library sessions in this process, each announcing a
// host of its own); one request per host makes each host's series; then
// every client leaves at once. Connecting or disconnecting a client should
// cost the same whatever N: the registry's work is in proportion to what
// a client announces, not to the number of clients.
func (h *harness) scale(ctx context.Context) error {
	for run := range h.p.runs {
		var steps []scaleStep
		for _, n := range h.p.scale {
			s, err := h.scaleRun(ctx, n)
			if err != nil {
				return err
			}
			logf("run %d %5d clients: connecting %s (Caddy CPU %.0f µs per client), leaving %s (%.0f µs per client); /metrics %s with them, %s after (%s before)",
				run+1, n, s.connect.Round(time.Millisecond), s.connectCPU, s.leave.Round(time.Millisecond), s.leaveCPU,
				kb(s.metricsWith), kb(s.metricsAfter), kb(s.metricsBefore))
			steps = append(steps, s)
		}
		h.res.scale = append(h.res.scale, steps)
	}
	return nil
}

// scaleStep is one step of scenario 7.
type scaleStep struct {
	clients                                  int
	connect, leave                           time.Duration
	connectCPU, leaveCPU                     float64 // Caddy's µs per client
	metricsBefore, metricsWith, metricsAfter float64 // bytes of /metrics
}

func kb(b float64) string { return fmt.Sprintf("%.0f KB", b/1e3) }

func (h *harness) scaleRun(ctx context.Context, n int) (scaleStep, error) {
	s := scaleStep{clients: n}
	tunnelPort := freePort()
	c, err := h.env.startCaddy(caddyfile{admin: freePort(), tunnel: tunnelPort})
	if err != nil {
		return s, err
	}
	defer c.stop()
	size := func() (float64, error) {
		b, err := c.get("/metrics")
		return float64(len(b)), err
	}
	if s.metricsBefore, err = size(); err != nil {
		return s, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	clients := make([]*client.Client, n)
	for i := range clients {
		clients[i], err = client.New(client.Config{
			URL:   fmt.Sprintf("ws://127.0.0.1:%d", tunnelPort),
			Token: h.env.token,
			ID:    fmt.Sprintf("scale-%d", i),
			// Never reachable: each request gets the client's
			// upstream-unreachable answer, a 502 under its host.
			HTTP:       []tunnel.HTTPUpstream{{Host: fmt.Sprintf("scale-%d.example.com", i), URL: "http://127.0.0.1:9"}},
			Logger:     quiet,
			MaxBackoff: 2 * time.Second,
		})
		if err != nil {
			return s, err
		}
	}

	cpu0, err := cpuTime(c.pid())
	if err != nil {
		return s, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); cl.Run(ctx) }()
	}
	if err := c.waitConnected(n, 5*time.Minute); err != nil {
		return s, err
	}
	s.connect = time.Since(start)
	cpu1, err := cpuTime(c.pid())
	if err != nil {
		return s, err
	}
	s.connectCPU = float64((cpu1 - cpu0).Microseconds()) / float64(n)

	// One request per host, 64 at a time.
	hosts := make(chan int)
	errs := make(chan error, dialers)
	var reqs sync.WaitGroup
	for range dialers {
		reqs.Add(1)
		go func() {
			defer reqs.Done()
			for i := range hosts {
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", tunnelPort), nil)
				req.Host = fmt.Sprintf("scale-%d.example.com", i)
				resp, err := adminClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for i := range n {
		hosts <- i
	}
	close(hosts)
	reqs.Wait()
	select {
	case err := <-errs:
		return s, err
	default:
	}
	if s.metricsWith, err = size(); err != nil {
		return s, err
	}

	cpu2, err := cpuTime(c.pid())
	if err != nil {
		return s, err
	}
	start = time.Now()
	cancel()
	wg.Wait()
	if err := c.waitConnected(0, 5*time.Minute); err != nil {
		return s, err
	}
	s.leave = time.Since(start)
	cpu3, err := cpuTime(c.pid())
	if err != nil {
		return s, err
	}
	s.leaveCPU = float64((cpu3 - cpu2).Microseconds()) / float64(n)
	s.metricsAfter, err = size()
	return s, err
}

// waitConnected waits until Caddy's connected gauge is n: cheaper to read
// than the status of thousands of clients.
func (c *caddy) waitConnected(n int, timeout time.Duration) error {
	return c.waitFor(fmt.Sprintf("%d connected clients", n), timeout, func() error {
		text, err := c.get("/metrics")
		if err != nil {
			return err
		}
		got, err := metricValue(string(text), "http_controlplane_connected_gauge")
		if err != nil {
			return err
		}
		if int(got) != n {
			return fmt.Errorf("%.0f clients connected, want %d", got, n)
		}
		return nil
	})
}

func (r *results) scaleMedians() []scaleStep {
	if len(r.scale) == 0 {
		return nil
	}
	out := make([]scaleStep, len(r.scale[0]))
	for i := range out {
		col := make([]scaleStep, len(r.scale))
		for run := range r.scale {
			col[run] = r.scale[run][i]
		}
		d := func(f func(scaleStep) time.Duration) time.Duration {
			return time.Duration(median(pick(col, func(s scaleStep) float64 { return float64(f(s)) })))
		}
		f := func(g func(scaleStep) float64) float64 { return median(pick(col, g)) }
		out[i] = scaleStep{
			clients:       col[0].clients,
			connect:       d(func(s scaleStep) time.Duration { return s.connect }),
			leave:         d(func(s scaleStep) time.Duration { return s.leave }),
			connectCPU:    f(func(s scaleStep) float64 { return s.connectCPU }),
			leaveCPU:      f(func(s scaleStep) float64 { return s.leaveCPU }),
			metricsBefore: f(func(s scaleStep) float64 { return s.metricsBefore }),
			metricsWith:   f(func(s scaleStep) float64 { return s.metricsWith }),
			metricsAfter:  f(func(s scaleStep) float64 { return s.metricsAfter }),
		}
	}
	return out
}

func (r *results) writeScale(w writer) {
	steps := r.scaleMedians()
	if len(steps) == 0 {
		return
	}
	w("\n## 7. Many clients\n\nA fresh Caddy per step. N clients (client-library sessions in the harness process, one WebSocket each, each announcing a host of its own, all from 127.0.0.1) " +
		"connect at once; connecting is timed until Caddy's `http_controlplane_connected_gauge` says N, and Caddy's CPU time over it is divided by N. " +
		"Then one request per host (64 at a time; each gets its client's upstream-unreachable 502) makes the host's metric series, and every client leaves at once, " +
		"timed until the gauge says 0. `/metrics` is the size of Caddy's admin metrics before the clients came, with them and their series, and after they left.\n\n")
	w("| clients | connecting | Caddy CPU per client | leaving | Caddy CPU per client | /metrics before | with the clients | after they left |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range steps {
		w("| %d | %s | %.0f µs | %s | %.0f µs | %s | %s | %s |\n", s.clients, s.connect.Round(time.Millisecond), s.connectCPU,
			s.leave.Round(time.Millisecond), s.leaveCPU, kb(s.metricsBefore), kb(s.metricsWith), kb(s.metricsAfter))
	}
}

// scaleTargets are scenario 7's targets: the cost per client does not
// grow with the number of clients (at most twice, for noise), and the
// series go with the clients.
func (r *results) scaleTargets() []target {
	steps := r.scaleMedians()
	if len(steps) < 2 {
		return nil
	}
	first, last := steps[0], steps[len(steps)-1]
	q := ratio(last.connectCPU+last.leaveCPU, first.connectCPU+first.leaveCPU)
	grown := ratio(last.metricsAfter, last.metricsBefore)
	return []target{
		{fmt.Sprintf("connecting and leaving cost Caddy ≤ 2 × as much CPU per client at %d clients as at %d", last.clients, first.clients),
			fmt.Sprintf("%.2f (%.0f vs %.0f µs)", q, last.connectCPU+last.leaveCPU, first.connectCPU+first.leaveCPU), q <= 2},
		{fmt.Sprintf("/metrics after %d clients left ≤ 1.1 × its size before they came", last.clients),
			fmt.Sprintf("%.2f (%s vs %s; %s with them)", grown, kb(last.metricsAfter), kb(last.metricsBefore), kb(last.metricsWith)), grown <= 1.1},
	}
}
