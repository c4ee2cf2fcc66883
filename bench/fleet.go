package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// fleet is scenario 11: one client with sessions to two servers. Small
// requests (wrk, 50 connections in all) through one server with a client
// that has a session to it alone, against the same spread over two
// servers (25 connections each) with a client that has a session to
// each: same upstream, same run. Then the client's memory per extra
// session, and failover: from a server's SIGKILL until the client's log
// says its session is down, and from the server's restart until a
// request through it is served again.
func (h *harness) fleet(ctx context.Context) error {
	e := h.env
	var servers []*caddy
	site := map[*caddy]string{}
	for i := range 2 {
		port := freePort()
		c, err := e.startCaddyNamed(fmt.Sprintf("Caddyfile-fleet-%d", i), caddyfile{admin: freePort(), tunnel: port})
		if err != nil {
			return err
		}
		defer c.stop()
		servers = append(servers, c)
		site[c] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	url := func(c *caddy) string { return fmt.Sprintf("http://%s/small", site[c]) }
	startClient := func(n int) (*proc, error) {
		args := []string{"http", "client", "--token", e.token, "--id", "bench-fleet", "--upstream", fmt.Sprintf("%s=http://127.0.0.1:%d", tunnelHost, h.up.http)}
		for _, c := range servers[:n] {
			args = append(args, "--url", "ws://"+site[c])
		}
		p, err := e.start(fmt.Sprintf("fleet-client-%d", n), filepath.Join(e.bin, "inlets"), args...)
		if err != nil {
			return nil, err
		}
		for _, c := range servers[:n] {
			if err := c.waitClients(1, 20*time.Second); err != nil {
				p.stop()
				return nil, err
			}
		}
		return p, nil
	}
	for run := range h.p.runs {
		one, err := startClient(1)
		if err != nil {
			return err
		}
		l, err := runWrk(ctx, url(servers[0]), tunnelHost, h.p.wrk)
		rss1, _ := settledRSS(one.pid())
		one.stop()
		if err != nil {
			return fmt.Errorf("one server: %w", err)
		}
		for _, c := range servers {
			if err := c.waitClients(0, 20*time.Second); err != nil {
				return err
			}
		}
		two, err := startClient(2)
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		loads := make([]httpLoad, 2)
		errs := make([]error, 2)
		for i, c := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				loads[i], errs[i] = runWrkConns(ctx, url(c), tunnelHost, h.p.wrk, 25)
			}()
		}
		wg.Wait()
		rss2, _ := settledRSS(two.pid())
		for _, err := range errs {
			if err != nil {
				two.stop()
				return fmt.Errorf("two servers: %w", err)
			}
		}
		spread := httpLoad{rps: loads[0].rps + loads[1].rps, p50: max(loads[0].p50, loads[1].p50), p99: max(loads[0].p99, loads[1].p99),
			non2xx: loads[0].non2xx + loads[1].non2xx, sockErrs: loads[0].sockErrs + loads[1].sockErrs}

		// Failover: the second server dies.
		killed := time.Now()
		servers[1].proc.cmd.Process.Signal(syscall.SIGKILL)
		<-servers[1].proc.done
		down, err := waitLog(two.log, fmt.Sprintf(`msg="tunnel down; reconnecting" server=ws://%s/connect`, site[servers[1]]), 20*time.Second)
		if err != nil {
			two.stop()
			return err
		}
		markedDown := down.Sub(killed)
		restarted := time.Now()
		if err := e.restartCaddy(servers[1]); err != nil {
			two.stop()
			return err
		}
		if err := waitServed(ctx, url(servers[1]), 30*time.Second); err != nil {
			two.stop()
			return err
		}
		servedAgain := time.Since(restarted)
		two.stop()
		r := fleetResult{one: l, spread: spread, rss1: rss1, rss2: rss2, markedDown: markedDown, servedAgain: servedAgain}
		logf("run %d fleet: one server %.0f req/s, two servers %.0f req/s (%.0f + %.0f); client RSS %s with one session, %s with two; SIGKILL noticed in %s, served again %s after the restart",
			run+1, l.rps, spread.rps, loads[0].rps, loads[1].rps, mib(rss1), mib(rss2), markedDown.Round(time.Millisecond), servedAgain.Round(time.Millisecond))
		h.res.fleet = append(h.res.fleet, r)
		for _, c := range servers {
			if err := c.waitClients(0, 20*time.Second); err != nil {
				return err
			}
		}
	}
	return nil
}

type fleetResult struct {
	one, spread             httpLoad
	rss1, rss2              float64 // bytes, the client's
	markedDown, servedAgain time.Duration
}

// settledRSS is a process's RSS, after a moment to settle.
func settledRSS(pid int) (float64, error) {
	time.Sleep(500 * time.Millisecond) // not a synchronisation: a figure taken after the load
	return vmRSS(pid)
}

// waitLog waits until a log file holds substr, and returns when it was
// seen (polled every 5ms).
func waitLog(path, substr string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), substr) {
			return time.Now(), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s never logged %q", filepath.Base(path), substr)
}

// waitServed polls url (with tunnelHost) every 10ms until it answers 200.
func waitServed(ctx context.Context, url string, timeout time.Duration) error {
	cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Host = tunnelHost
		if resp, err := cl.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s was not served again within %s", url, timeout)
}

// writeFleet is scenario 11's section of the report.
func (r *results) writeFleet(w writer) {
	if len(r.fleet) == 0 {
		return
	}
	w("\n## 11. A fleet of servers\n\nSmall HTTP requests (wrk, %ds) through one server with a client that has a session to it alone (50 connections), "+
		"against the same spread over two servers with a client that has a session to each (25 connections to each, two wrk at once); "+
		"same upstream, Caddy processes and client binary. The two share the machine's cores: the ratio shows what several sessions cost the client, and on 2 cores it cannot exceed 1. "+
		"Then the client's RSS with one session and with two, and failover: a server killed (SIGKILL) until the client logs its session down; "+
		"its restart (a new process) until a request through it is served again (polled every 10ms).\n\n", int(r.params.wrk.Seconds()))
	w("| run | one server | two servers | ratio | client RSS, 1 session → 2 | SIGKILL noticed | served again after restart |\n|---|---|---|---|---|---|---|\n")
	for i, f := range r.fleet {
		w("| %d | %.0f req/s | %.0f req/s | %.2f | %s → %s | %s | %s |\n", i+1, f.one.rps, f.spread.rps, ratio(f.spread.rps, f.one.rps),
			mib(f.rss1), mib(f.rss2), f.markedDown.Round(time.Millisecond), f.servedAgain.Round(time.Millisecond))
	}
}
