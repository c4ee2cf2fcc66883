package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// idle is scenario 4: Caddy's memory and goroutines with 1, 100 and 1,000
// connected idle clients. The clients are client-library sessions inside
// this process (one process, many client.Clients), each with its own
// WebSocket and announcing a host of its own; the server cannot tell them
// from client processes. Each run starts a fresh Caddy.
func (h *harness) idle(ctx context.Context) error {
	for run := range h.p.runs {
		steps, err := h.idleRun(ctx)
		if err != nil {
			return err
		}
		h.res.idle = append(h.res.idle, steps)
		for _, s := range steps {
			logf("run %d %5d idle clients: RSS %s, heap in use %s, %.0f goroutines", run+1, s.clients, mib(s.mem.rss), mib(s.mem.heapInuse), s.mem.goroutines)
		}
	}
	return nil
}

// idleStep is Caddy's memory with a number of idle clients.
type idleStep struct {
	clients int
	mem     memory
}

func (h *harness) idleRun(ctx context.Context) ([]idleStep, error) {
	tunnelPort := freePort()
	c, err := h.env.startCaddy(caddyfile{admin: freePort(), tunnel: tunnelPort})
	if err != nil {
		return nil, err
	}
	defer c.stop()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	var steps []idleStep
	running := 0
	for _, n := range h.p.idle {
		for ; running < n; running++ {
			cl, err := client.New(client.Config{
				URL:   fmt.Sprintf("ws://127.0.0.1:%d", tunnelPort),
				Token: h.env.token,
				ID:    fmt.Sprintf("idle-%d", running),
				// Never dialled: idle clients get no visitors.
				HTTP:       []tunnel.HTTPUpstream{{Host: fmt.Sprintf("idle-%d.example.com", running), URL: "http://127.0.0.1:9"}},
				Logger:     quiet,
				MaxBackoff: 2 * time.Second,
			})
			if err != nil {
				return nil, err
			}
			wg.Add(1)
			go func() { defer wg.Done(); cl.Run(ctx) }()
		}
		if err := c.waitClients(n, 2*time.Minute); err != nil {
			return nil, err
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return nil, err
		}
		m, err := c.settledSample(h.p.memorySamples)
		if err != nil {
			return nil, err
		}
		steps = append(steps, idleStep{n, m})
	}
	return steps, nil
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
