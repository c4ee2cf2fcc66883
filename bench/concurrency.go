package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// concurrency is scenario 5: many TCP connections held open at once
// through one `inlets tcp client` process to the upstream's echo server.
// Each connection echoes a message when it opens, and again once all are
// open (proving they were all alive together); Caddy's memory is sampled
// with all of them open; then all are closed and Caddy must count none
// left. Each run starts a fresh Caddy and client.
func (h *harness) concurrency(ctx context.Context) error {
	for run := range h.p.runs {
		r, err := h.concurrencyRun(ctx)
		if err != nil {
			return err
		}
		logf("run %d %d connections: %d errors, %.0f open in Caddy; RSS %s → %s, heap in use %s → %s, goroutines %.0f → %.0f",
			run+1, r.conns, r.errors, r.serverOpen, mib(r.before.rss), mib(r.open.rss),
			mib(r.before.heapInuse), mib(r.open.heapInuse), r.before.goroutines, r.open.goroutines)
		h.res.conc = append(h.res.conc, r)
	}
	return nil
}

// concResult is one run of scenario 5.
type concResult struct {
	conns      int
	errors     int
	serverOpen float64 // Caddy's tcp_dataplane_connections_gauge with all open
	before     memory  // Caddy with none open
	open       memory  // Caddy with all open
	openTime   time.Duration
}

// dialers bounds the connections being opened at once.
const dialers = 64

func (h *harness) concurrencyRun(ctx context.Context) (concResult, error) {
	r := concResult{conns: h.p.conns}
	tunnelPort, port := freePort(), freePort()
	c, err := h.env.startCaddy(caddyfile{admin: freePort(), tunnel: tunnelPort, tcpPorts: []int{port}})
	if err != nil {
		return r, err
	}
	defer c.stop()
	cl, err := h.env.tcpClientProc(loopback(tunnelPort), map[int]int{port: h.up.echo})
	if err != nil {
		return r, err
	}
	defer cl.stop()
	if err := c.waitClients(1, 30*time.Second); err != nil {
		return r, err
	}
	if r.before, err = c.settledSample(h.p.memorySamples); err != nil {
		return r, err
	}

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conns := make([]net.Conn, h.p.conns)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				conn.Close()
			}
		}
	}()
	var errs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	start := time.Now()
	each(ctx, len(conns), func(i int) {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fail(err)
			return
		}
		if err := echo(conn, i, "open"); err != nil {
			conn.Close()
			fail(err)
			return
		}
		conns[i] = conn
	})
	r.openTime = time.Since(start)
	each(ctx, len(conns), func(i int) {
		if conns[i] != nil {
			if err := echo(conns[i], i, "held"); err != nil {
				fail(err)
			}
		}
	})
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.errors = int(errs.Load())
	if r.errors > 0 {
		logf("%d connection errors; the first: %v", r.errors, firstErr.Load())
	}
	gauge := fmt.Sprintf(`tcp_dataplane_connections_gauge{port="%d"}`, port)
	if r.serverOpen, err = c.metric(gauge); err != nil {
		return r, err
	}
	if r.open, err = c.settledSample(h.p.memorySamples); err != nil {
		return r, err
	}
	for i, conn := range conns {
		if conn != nil {
			conn.Close()
			conns[i] = nil
		}
	}
	// Every connection must end in Caddy too.
	return r, c.waitFor("Caddy to close every connection", 60*time.Second, func() error {
		n, err := c.metric(gauge)
		if err == nil && n != 0 {
			err = fmt.Errorf("%.0f connections still open", n)
		}
		return err
	})
}

// echo writes a message naming connection i and reads it back.
func echo(conn net.Conn, i int, what string) error {
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetDeadline(time.Time{})
	msg := fmt.Appendf(nil, "connection %06d %s\n", i, what)
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("connection %d: reading the echo: %w", i, err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("connection %d: echo %q, want %q", i, got, msg)
	}
	return nil
}

// each runs f(0) … f(n-1) on a bounded number of goroutines, stopping
// early when ctx ends.
func each(ctx context.Context, n int, f func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, dialers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}
