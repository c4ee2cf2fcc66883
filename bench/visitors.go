package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Subjects of scenario 13's small requests.
const (
	subjectNoPolicy = "no visitors policy"
	subjectPolicy   = "allow list and rate"
)

// cappedHost is the host of scenario 13's tunnel with a bandwidth cap.
const cappedHost = "capped.example.com"

// visitorsResult is one run of scenario 13's download.
type visitorsResult struct {
	bytes int64
	took  time.Duration
	cap   int64 // bytes a second
}

// visitors is scenario 13: what a tunnel's visitors policy costs and
// does. Small keep-alive requests, with wrk, through tunnel app with no
// policy, against the same through a tunnel app whose visitors block has
// an allow list and a rate no load reaches (so every request is checked
// against both, and none refused), each on a Caddy of its own with its
// client, measured in turn. Then one download through a tunnel with a
// bandwidth cap, timed: its achieved rate against the cap.
func (h *harness) visitors(ctx context.Context) error {
	const capBytes = 20 << 20
	subjects := map[string]subject{}
	procs := map[string]map[string]*proc{}
	var cappedURL string
	for _, sub := range []struct {
		name     string
		visitors string
	}{{subjectNoPolicy, ""}, {subjectPolicy, "\t\t\tvisitors {\n\t\t\t\tallow 127.0.0.0/8 ::1\n\t\t\t\trate 1000000/s burst 1000000\n\t\t\t}\n"}} {
		port := freePort()
		globals := fmt.Sprintf("\tinlets {\n\t\ttunnel %s {\n\t\t\ttoken %s\n\t\t\thosts %s\n%s\t\t}\n", appTunnel, h.env.tunnelToken(appTunnel), tunnelHost, sub.visitors)
		if sub.name == subjectPolicy {
			globals += fmt.Sprintf("\t\ttunnel capped {\n\t\t\ttoken %s\n\t\t\thosts %s\n\t\t\tvisitors {\n\t\t\t\tbandwidth_down %dB/s\n\t\t\t}\n\t\t}\n", h.env.tunnelToken("capped"), cappedHost, capBytes)
		}
		globals += "\t}\n"
		c, err := h.env.startCaddyNamed("Caddyfile-"+sub.name, caddyfile{admin: freePort(), tunnel: port, globals: globals})
		if err != nil {
			return err
		}
		defer c.stop()
		cl, err := h.env.httpClientProcAs(loopback(port), h.env.tunnelToken(appTunnel), h.up, tunnelHost)
		if err != nil {
			return err
		}
		defer cl.stop()
		clients := 1
		if sub.name == subjectPolicy {
			capped, err := h.env.httpClientProcAs(loopback(port), h.env.tunnelToken("capped"), h.up, cappedHost)
			if err != nil {
				return err
			}
			defer capped.stop()
			clients++
			cappedURL = fmt.Sprintf("http://127.0.0.1:%d/blob?size=%d", port, h.p.bodySize)
		}
		if err := c.waitClients(clients, 30*time.Second); err != nil {
			return err
		}
		s := subject{sub.name, fmt.Sprintf("http://127.0.0.1:%d/small", port)}
		if err := checkSmall(s.url); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		subjects[sub.name] = s
		procs[sub.name] = map[string]*proc{roleUpstream: h.up.proc, roleCaddy: c.proc, roleHTTPClient: cl}
	}
	return h.wrkRounds(ctx, "visitors", []string{subjectNoPolicy, subjectPolicy}, subjects, procs, h.res.visitorsSmall, true, func(run int) error {
		res, err := timedDownload(ctx, cappedURL, cappedHost, h.p.bodySize)
		if err != nil {
			return fmt.Errorf("the capped download: %w", err)
		}
		res.cap = capBytes
		logf("run %d capped download: %d MB in %s, %.1f MB/s under a cap of %.1f MB/s", run+1, res.bytes/1e6, res.took.Round(time.Millisecond),
			float64(res.bytes)/res.took.Seconds()/1e6, float64(capBytes)/1e6)
		h.res.visitorsDownload = append(h.res.visitorsDownload, res)
		return nil
	})
}

// timedDownload GETs url with host and times it to the end of the body, which
// must be size bytes.
func timedDownload(ctx context.Context, url, host string, size int64) (visitorsResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return visitorsResult{}, err
	}
	req.Host = host
	start := time.Now()
	resp, err := benchClient.Do(req)
	if err != nil {
		return visitorsResult{}, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	took := time.Since(start)
	if err == nil && (resp.StatusCode != http.StatusOK || n != size) {
		err = fmt.Errorf("HTTP %d, %d bytes of %d", resp.StatusCode, n, size)
	}
	return visitorsResult{bytes: n, took: took}, err
}

// writeVisitors is scenario 13's section.
func (r *results) writeVisitors(w writer) {
	if len(r.visitorsSmall) == 0 {
		return
	}
	w("\n## 13. Visitors policy\n\nSmall keep-alive requests (`wrk -t 1 -c 50`, %s per run) through tunnel app and its `inlets http client` process, "+
		"on a Caddy of its own: with no visitors block, and with `visitors { allow 127.0.0.0/8 ::1; rate 1000000/s burst 1000000 }`, so that every request "+
		"is checked against the allow list and takes from its visitor's rate, and none is refused. Measured in turn, in the same rounds.\n\n", r.params.wrk)
	r.writeLoadTableOf(w, r.visitorsSmall, []string{subjectNoPolicy, subjectPolicy})
	nrps, _, _, _ := r.smallMedians(r.visitorsSmall, subjectNoPolicy)
	prps, _, _, _ := r.smallMedians(r.visitorsSmall, subjectPolicy)
	w("\nRatio: with the policy / without, requests/s **%.2f**.\n", ratio(prps, nrps))
	if len(r.visitorsDownload) > 0 {
		rates := pick(r.visitorsDownload, func(x visitorsResult) float64 { return float64(x.bytes) / x.took.Seconds() / 1e6 })
		d := r.visitorsDownload[0]
		capMB := float64(d.cap) / 1e6
		// The most the cap allows: the bucket's burst at once, the rest at
		// the cap.
		burst := float64(min(max(d.cap/10, 64<<10), 4<<20))
		most := float64(d.bytes) / ((float64(d.bytes) - burst) / float64(d.cap)) / 1e6
		w("\nOne GET of %d MB through a tunnel with `bandwidth_down %dMiB/s` (%.1f MB/s; its bucket's burst, a tenth of a second's worth, at once), after each round: "+
			"**%.1f MB/s** (median), %s; the most the cap allows for this size, the burst included: %.1f MB/s.\n", d.bytes/1e6, d.cap>>20, capMB, median(rates), runs(rates, "%.1f MB/s"), most)
	}
}
