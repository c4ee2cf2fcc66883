package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"
)

// reconnect is scenario 6: with an `inlets http client` process
// connected, stop Caddy (SIGTERM, waiting for it to exit) and start it
// again with the same config; measure from starting the new process until
// a request through the tunnel first succeeds, polling every 15ms. Caddy's
// own start (its admin endpoint answering) is timed on the side, to tell
// it from the client's share.
func (h *harness) reconnect(ctx context.Context) error {
	tunnelPort := freePort()
	c, err := h.env.startCaddy(caddyfile{admin: freePort(), tunnel: tunnelPort})
	if err != nil {
		return err
	}
	defer func() { c.stop() }()
	cl, err := h.env.httpClientProc(tunnelPort, tunnelHost, h.up)
	if err != nil {
		return err
	}
	defer cl.stop()
	url := fmt.Sprintf("http://127.0.0.1:%d/small", tunnelPort)
	if err := c.waitClients(1, 30*time.Second); err != nil {
		return err
	}
	poll := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range h.p.restarts {
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		c.stop()
		start := time.Now()
		p, err := h.env.start("caddy", filepath.Join(h.env.bin, "caddy"), "run", "--config", c.config, "--adapter", "caddyfile")
		if err != nil {
			return err
		}
		c.proc = p
		var caddyUp time.Duration
		err = p.waitFor("a request through the tunnel after the restart", 30*time.Second, func() error {
			if caddyUp == 0 {
				if _, err := c.get("/config/"); err == nil {
					caddyUp = time.Since(start)
				}
			}
			if _, err := getSmall(poll, url); err != nil {
				time.Sleep(5 * time.Millisecond) // with waitFor's 10ms: a 15ms poll
				return err
			}
			return nil
		})
		took := time.Since(start)
		if err != nil {
			return err
		}
		if caddyUp == 0 {
			caddyUp = took
		}
		logf("restart %d: back in service after %s (Caddy's admin endpoint up after %s)", i+1, took.Round(time.Millisecond), caddyUp.Round(time.Millisecond))
		h.res.reconnect = append(h.res.reconnect, reconnectResult{took, caddyUp})
	}
	return nil
}

type reconnectResult struct {
	service, caddyUp time.Duration
}
