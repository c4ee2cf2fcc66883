package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// udp is scenario 9: UDP through the tunnel against the same directly. A
// real dnsmasq answers names of a hosts file, and dnsperf (Debian's) asks
// it as fast as it answers, directly and through a UDP tunnel's client;
// then iperf3 -u sends at fixed rates to an iperf3 server, directly and
// through the tunnel (its control connection through a TCP port of the
// same client), and reports loss and jitter. One Caddy and one `inlets
// tcp client` process for all of it.
func (h *harness) udp(ctx context.Context) error {
	for _, tool := range []string{"dnsmasq", "dnsperf", "iperf3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("scenario udp needs %s: apt-get install dnsmasq-base dnsperf iperf3", tool)
		}
	}
	e := h.env
	dnsPort, iperfPort := freeUDPPort(), freeUDPPort()
	hosts := filepath.Join(e.dir, "hosts")
	queries := filepath.Join(e.dir, "queries")
	var hb, qb strings.Builder
	for i := range 100 {
		fmt.Fprintf(&hb, "10.0.%d.%d host-%d.bench.lan\n", i/250, i%250+1, i)
		fmt.Fprintf(&qb, "host-%d.bench.lan A\n", i)
	}
	if err := os.WriteFile(hosts, []byte(hb.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(queries, []byte(qb.String()), 0o644); err != nil {
		return err
	}
	args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=", "--port=" + strconv.Itoa(dnsPort),
		"--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts", "--addn-hosts=" + hosts, "--log-facility=-"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	dns, err := e.start("dnsmasq", "dnsmasq", args...)
	if err != nil {
		return err
	}
	defer dns.stop()
	iperf, err := e.start("iperf3-udp-server", "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return err
	}
	defer iperf.stop()

	tunnelPort, dnsPublic, iperfPublic := freePort(), freeUDPPort(), freeUDPPort()
	c, err := e.startCaddy(caddyfile{admin: freePort(), tunnel: tunnelPort, tcpPorts: []int{iperfPublic}, udpPorts: []int{dnsPublic, iperfPublic}})
	if err != nil {
		return err
	}
	defer c.stop()
	client, err := e.start("udp-client", filepath.Join(e.bin, "inlets"), "tcp", "client",
		"--url", fmt.Sprintf("ws://127.0.0.1:%d", tunnelPort), "--token", e.token, "--id", "bench-udp", "--upstream", "127.0.0.1",
		"--ports", fmt.Sprintf("%d:%d", iperfPublic, iperfPort),
		"--udp-ports", fmt.Sprintf("%d:%d,%d:%d", dnsPublic, dnsPort, iperfPublic, iperfPort))
	if err != nil {
		return err
	}
	defer client.stop()
	if err := c.waitClients(1, 20*time.Second); err != nil {
		return err
	}
	// Both answer a query before anything is timed.
	for _, port := range []int{dnsPort, dnsPublic} {
		if err := dns.waitFor("dnsmasq on "+strconv.Itoa(port), 10*time.Second, func() error {
			_, err := runDNSPerf(ctx, port, queries, time.Second, 1)
			return err
		}); err != nil {
			return err
		}
	}

	d := h.p.iperf
	for run := range h.p.runs {
		for _, s := range []struct {
			subject string
			dns     int
			iperf   int
		}{{subjectDirect, dnsPort, iperfPort}, {subjectUDPTunnel, dnsPublic, iperfPublic}} {
			r, err := runDNSPerf(ctx, s.dns, queries, d, 10)
			if err != nil {
				return fmt.Errorf("dnsperf, %s: %w", s.subject, err)
			}
			logf("run %d dnsperf %-12s %8.0f queries/s  p50 %.3fms  p99 %.3fms  lost %.2f%%", run+1, s.subject, r.qps, r.p50*1e3, r.p99*1e3, r.lostPct)
			h.res.dns[s.subject] = append(h.res.dns[s.subject], r)
			for _, rate := range udpRates {
				r, err := runIperfUDP(ctx, s.iperf, rate, d)
				if err != nil {
					return fmt.Errorf("iperf3 -u -b %s, %s: %w", rate, s.subject, err)
				}
				logf("run %d iperf3 -u -b %-5s %-12s %7.1f Mbit/s received  lost %.2f%%  jitter %.3fms", run+1, rate, s.subject, r.bps/1e6, r.lostPct, r.jitterMS)
				k := udpKey{rate, s.subject}
				h.res.udpIperf[k] = append(h.res.udpIperf[k], r)
			}
		}
	}
	return nil
}

// subjectUDPTunnel is the UDP tunnel, in scenario 9.
const subjectUDPTunnel = "UDP tunnel"

// iperfDatagram is the size of iperf3 -u's datagrams.
const iperfDatagram = 1400

// udpRates are the rates iperf3 -u sends at.
var udpRates = []string{"100M", "1G"}

type udpKey struct{ rate, subject string }

// freeUDPPort is a port free for TCP and UDP on 127.0.0.1 a moment ago.
func freeUDPPort() int {
	for {
		port := freePort()
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			pc.Close()
			return port
		}
	}
}

// dnsResult is one dnsperf run.
type dnsResult struct {
	qps, lostPct float64
	p50, p99     float64 // seconds
}

// runDNSPerf runs dnsperf against 127.0.0.1:port for d with clients
// sockets (so as many flows through a tunnel), and takes the latency
// percentiles from its per-query lines (-v).
func runDNSPerf(ctx context.Context, port int, queries string, d time.Duration, clients int) (dnsResult, error) {
	out, _, err := run(ctx, d+30*time.Second, "dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", queries,
		"-l", strconv.Itoa(max(1, int(d.Seconds()))), "-c", strconv.Itoa(clients), "-t", "2", "-v")
	if err != nil {
		return dnsResult{}, err
	}
	return parseDNSPerf(out)
}

func parseDNSPerf(out []byte) (dnsResult, error) {
	var r dnsResult
	var lat []float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "> "):
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				lat = append(lat, v)
			}
		case strings.HasPrefix(line, "Queries per second:"):
			r.qps, _ = strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Queries per second:")), 64)
		case strings.HasPrefix(line, "Queries lost:"):
			// "Queries lost:         0 (0.00%)"
			if i, j := strings.Index(line, "("), strings.Index(line, "%"); i >= 0 && j > i {
				r.lostPct, _ = strconv.ParseFloat(line[i+1:j], 64)
			}
		}
	}
	if r.qps == 0 || len(lat) == 0 {
		return r, fmt.Errorf("dnsperf answered nothing: %s", lastLines(out, 5))
	}
	slices.Sort(lat)
	r.p50, r.p99 = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	return r, nil
}

// udpIperfResult is one iperf3 -u run, as the receiver measured it.
type udpIperfResult struct {
	bps, lostPct, jitterMS float64
}

func runIperfUDP(ctx context.Context, port int, rate string, d time.Duration) (udpIperfResult, error) {
	// -l: datagrams that fit a 1500-byte MTU, as WireGuard's or QUIC's.
	// iperf3's own default on loopback is its MSS, 32 KiB or more, which
	// the tunnel drops (over max_datagram_size) and counts.
	args := []string{"-c", "127.0.0.1", "-p", strconv.Itoa(port), "-u", "-b", rate, "-l", strconv.Itoa(iperfDatagram), "-J", "-t", strconv.Itoa(max(1, int(d.Seconds())))}
	for attempt := 0; ; attempt++ {
		out, _, err := run(ctx, d+30*time.Second, "iperf3", args...)
		if len(out) == 0 {
			return udpIperfResult{}, err
		}
		var j struct {
			Error string `json:"error"`
			End   struct {
				// What the receiver, the iperf3 server, measured.
				Sum struct {
					Bytes         float64 `json:"bytes"`
					BitsPerSecond float64 `json:"bits_per_second"`
					JitterMS      float64 `json:"jitter_ms"`
					LostPercent   float64 `json:"lost_percent"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out, &j); err != nil {
			return udpIperfResult{}, fmt.Errorf("iperf3 JSON: %w", err)
		}
		if strings.Contains(j.Error, "server is busy") && attempt < 50 {
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return udpIperfResult{}, err
			}
			continue
		}
		if j.Error != "" {
			return udpIperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
		}
		if j.End.Sum.Bytes == 0 {
			return udpIperfResult{}, fmt.Errorf("iperf3 -u: the server received no datagram")
		}
		s := j.End.Sum
		return udpIperfResult{bps: s.BitsPerSecond, lostPct: s.LostPercent, jitterMS: s.JitterMS}, nil
	}
}

// writeUDP is scenario 9's section of the report.
func (r *results) writeUDP(w writer) {
	if len(r.dns) == 0 {
		return
	}
	w("\n## 9. UDP\n\nA real dnsmasq (Debian's) answering the A records of a 100-name hosts file, asked by `dnsperf -c 10 -l %d -v` "+
		"(10 sockets, so 10 flows through the tunnel; as fast as answers come, 100 queries outstanding), directly and through a UDP tunnel "+
		"(Caddy's `udp_ports`, one `inlets tcp client --udp-ports` process); latencies from dnsperf's per-query lines. "+
		"Then `iperf3 -u -b RATE -l 1400 -t %d` to an iperf3 server, directly and through the same client (its control connection through a TCP port "+
		"of the client); loss and jitter as the receiver measured them.\n\n", int(r.params.iperf.Seconds()), int(r.params.iperf.Seconds()))
	w("| subject | queries/s | p50 | p99 | lost | runs (queries/s) |\n|---|---|---|---|---|---|\n")
	for _, s := range []string{subjectDirect, subjectUDPTunnel} {
		rs := r.dns[s]
		w("| %s | %.0f | %.3fms | %.3fms | %.2f%% | %s |\n", s, median(pick(rs, func(x dnsResult) float64 { return x.qps })),
			median(pick(rs, func(x dnsResult) float64 { return x.p50 }))*1e3, median(pick(rs, func(x dnsResult) float64 { return x.p99 }))*1e3,
			median(pick(rs, func(x dnsResult) float64 { return x.lostPct })), runs(pick(rs, func(x dnsResult) float64 { return x.qps }), "%.0f"))
	}
	w("\n| rate | subject | received | lost | jitter | runs (lost %%) |\n|---|---|---|---|---|---|\n")
	for _, rate := range udpRates {
		for _, s := range []string{subjectDirect, subjectUDPTunnel} {
			rs := r.udpIperf[udpKey{rate, s}]
			w("| %s | %s | %.1f Mbit/s | %.2f%% | %.3fms | %s |\n", rate, s, median(pick(rs, func(x udpIperfResult) float64 { return x.bps }))/1e6,
				median(pick(rs, func(x udpIperfResult) float64 { return x.lostPct })), median(pick(rs, func(x udpIperfResult) float64 { return x.jitterMS })),
				runs(pick(rs, func(x udpIperfResult) float64 { return x.lostPct }), "%.2f"))
		}
	}
}

// udpTargets are issue 12's targets for UDP.
func (r *results) udpTargets() []target {
	if len(r.dns) == 0 {
		return nil
	}
	qps := func(s string) float64 { return median(pick(r.dns[s], func(x dnsResult) float64 { return x.qps })) }
	q := ratio(qps(subjectUDPTunnel), qps(subjectDirect))
	p99 := median(pick(r.dns[subjectUDPTunnel], func(x dnsResult) float64 { return x.p99 }))
	lost := median(pick(r.udpIperf[udpKey{"100M", subjectUDPTunnel}], func(x udpIperfResult) float64 { return x.lostPct }))
	return []target{
		{"UDP tunnel ≥ 0.3 × direct DNS queries/s (dnsmasq, dnsperf)", fmt.Sprintf("%.2f (%.0f vs %.0f queries/s; p99 %.3fms)", q, qps(subjectUDPTunnel), qps(subjectDirect), p99*1e3), q >= 0.3},
		{"UDP tunnel ≤ 1% loss at 100 Mbit/s (iperf3 -u)", fmt.Sprintf("%.2f%%", lost), lost <= 1},
	}
}
