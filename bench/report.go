package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Subjects and directions, as the report names them.
const (
	subjectDirect     = "direct"
	subjectProxy      = "reverse_proxy"
	subjectHTTPTunnel = "HTTP tunnel"
	subjectTCPTunnel  = "TCP tunnel"

	directionDownload = "download"
	directionUpload   = "upload"
)

type bulkKey struct {
	test    iperfArgs
	subject string
}

type bodyKey struct {
	direction, subject string
}

// results is everything one harness run measured.
type results struct {
	machine  machine
	quick    bool
	params   params
	load     []scenarioLoad
	failures []string
	// discarded lists the rounds measured again because something else
	// took the CPU.
	discarded []string

	small    map[string][]httpLoad // wrk, per subject, per run
	smallHey map[string][]httpLoad // hey, the same
	// smallNewConns is wrk with each request on a new connection, direct
	// and through the TCP tunnel, per subject, per run.
	smallNewConns map[string][]httpLoad
	// smallHeyNewConns is hey -disable-keepalive, the same.
	smallHeyNewConns map[string][]httpLoad

	bulk      map[bulkKey][]iperfResult
	bodies    map[bodyKey][]float64 // MB/s per run
	idle      [][]idleStep          // per run, per step
	conc      []concResult
	reconnect []reconnectResult
	scale     [][]scaleStep // per run, per step
	tenants   [][]tenantStep
	// tenantSmall is scenario 8's small requests, per subject, per run.
	tenantSmall map[string][]httpLoad
	// dns and udpIperf are scenario 9's, per subject, per run.
	dns      map[string][]dnsResult
	udpIperf map[udpKey][]udpIperfResult
	// sni is scenario 10's small HTTPS requests, per subject, per run.
	sni map[string][]httpLoad
	// fleet is scenario 11's, per run.
	fleet []fleetResult
	// link is scenario 12's, per round-trip time, per run.
	link map[time.Duration][]linkResult
	// visitorsSmall is scenario 13's small requests, per subject, per
	// run; visitorsDownload its capped download, per run.
	visitorsSmall    map[string][]httpLoad
	visitorsDownload []visitorsResult
	// grpc is scenario 14's unary calls, per caller count and subject,
	// per run.
	grpc map[grpcKey][]grpcLoad
}

func newResults() *results {
	return &results{
		small:            map[string][]httpLoad{},
		smallHey:         map[string][]httpLoad{},
		smallNewConns:    map[string][]httpLoad{},
		smallHeyNewConns: map[string][]httpLoad{},
		visitorsSmall:    map[string][]httpLoad{},
		bulk:             map[bulkKey][]iperfResult{},
		bodies:           map[bodyKey][]float64{},

		tenantSmall: map[string][]httpLoad{},
		dns:         map[string][]dnsResult{},
		udpIperf:    map[udpKey][]udpIperfResult{},
		sni:         map[string][]httpLoad{},
		link:        map[time.Duration][]linkResult{},
		grpc:        map[grpcKey][]grpcLoad{},
	}
}

// scenarioLoad is the load average around a scenario.
type scenarioLoad struct {
	scenario      string
	before, after string
	took          time.Duration
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// errorCount counts the errors the figures include: failed requests and
// connections.
func (r *results) errorCount() float64 {
	var n float64
	for _, runs := range [](map[string][]httpLoad){r.small, r.smallHey, r.smallNewConns, r.smallHeyNewConns, r.tenantSmall} {
		for _, ls := range runs {
			for _, l := range ls {
				n += l.errors()
			}
		}
	}
	for _, c := range r.conc {
		n += float64(c.errors)
	}
	return n + r.grpcErrors()
}

// machine describes where the figures were taken.
type machine struct {
	cpu, kernel, gomaxprocs, goVersion, caddy, commit string
	wrk, hey, iperf, nofile, date                     string
	cores                                             int
}

func describeMachine(ctx context.Context, bin string) machine {
	m := machine{
		cpu:       firstMatch(readOr("/proc/cpuinfo"), "model name"),
		kernel:    strings.TrimSpace(readOr("/proc/sys/kernel/osrelease")),
		cores:     runtime.NumCPU(),
		goVersion: runtime.Version(),
		caddy:     firstLine(output(ctx, filepath.Join(bin, "caddy"), "version")),
		commit:    firstLine(output(ctx, "git", "rev-parse", "--short", "HEAD")),
		wrk:       firstLine(output(ctx, "wrk", "-v")),
		hey:       "hey " + output(ctx, "dpkg-query", "-W", "-f", "${Version}", "hey"),
		iperf:     firstLine(output(ctx, "iperf3", "--version")),
		nofile:    firstLine(output(ctx, "sh", "-c", "ulimit -n")),
		date:      time.Now().UTC().Format("2006-01-02 15:04 MST"),
	}
	if strings.TrimSpace(output(ctx, "git", "status", "--porcelain", "--untracked-files=no")) != "" {
		m.commit += " + uncommitted changes"
	}
	m.gomaxprocs = fmt.Sprintf("unset: every Go process uses %d (one per core)", runtime.GOMAXPROCS(0))
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		m.gomaxprocs = v + " (from the environment)"
	}
	return m
}

func (m machine) summary() string {
	return fmt.Sprintf("%s, %d cores, Linux %s, GOMAXPROCS %s, %s", m.cpu, m.cores, m.kernel, m.gomaxprocs, m.goVersion)
}

func output(ctx context.Context, name string, args ...string) string {
	out, _ := exec.CommandContext(ctx, name, args...).Output()
	return strings.TrimSpace(string(out))
}

func readOr(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

func firstMatch(text, key string) string {
	for line := range strings.Lines(text) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// median of xs; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// quantile is the q-quantile of xs, the harness's way: the element at
// q·len of them sorted; 0 for none.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func pick[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// runs formats every run's figure.
func runs(xs []float64, format string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, " / ")
}

// target is one of the targets, checked.
type target struct {
	what, figure string
	met          bool
}

func metOr(met bool) string {
	if met {
		return "**met**"
	}
	return "**not met**"
}

// Markers around the part of BENCHMARKS.md that the harness writes.
const (
	beginMarker = "<!-- inletsbench: begin. Generated by bench/run.sh: edit outside these markers. -->"
	endMarker   = "<!-- inletsbench: end -->"
)

// writeReport puts measured between the markers of the file at path,
// leaving the rest of it as it is; a file that does not exist yet gets a
// title and the measured part.
func writeReport(path, measured string) error {
	block := beginMarker + "\n" + measured + endMarker
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return os.WriteFile(path, []byte("# Benchmarks\n\n"+block+"\n"), 0o644)
	}
	if err != nil {
		return err
	}
	before, rest, ok1 := bytes.Cut(old, []byte(beginMarker))
	_, after, ok2 := bytes.Cut(rest, []byte(endMarker))
	if !ok1 || !ok2 {
		return fmt.Errorf("%s exists without the markers %q and %q; add them where the figures go, or pass --out", path, beginMarker, endMarker)
	}
	return os.WriteFile(path, slices.Concat(before, []byte(block), after), 0o644)
}

// markdown is the measured part of the report, also printed at the end.
func (r *results) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p := r.params
	if r.quick {
		w("**`--quick` run: one short run of each scenario, with small counts. It checks that every scenario works; its figures mean nothing.**\n\n")
	}
	if len(r.failures) > 0 {
		w("**Scenarios that failed:**\n\n")
		for _, f := range r.failures {
			w("- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
		w("\n")
	}

	targets := r.targets()
	if len(targets) > 0 {
		w("## Targets\n\nThe issues' targets, as ratios to the baseline taken in the same run on this machine:\n\n")
		w("| target | figure | |\n|---|---|---|\n")
		for _, t := range targets {
			w("| %s | %s | %s |\n", t.what, t.figure, metOr(t.met))
		}
		w("\n")
	}

	m := r.machine
	w("## Machine and conditions\n\n")
	w("| | |\n|---|---|\n")
	w("| date | %s |\n| CPU | %s, %d cores |\n| kernel | Linux %s |\n| GOMAXPROCS | %s |\n", m.date, m.cpu, m.cores, m.kernel, m.gomaxprocs)
	w("| Go | %s |\n| Caddy | %s |\n| caddy-inlets | %s |\n| wrk | %s |\n| hey | %s |\n| iperf3 | %s |\n| open files (ulimit -n) | %s |\n",
		m.goVersion, m.caddy, m.commit, m.wrk, m.hey, m.iperf, m.nofile)
	w("\nLoad average (1, 5, 15 min) around each scenario:\n\n| scenario | before | after | took |\n|---|---|---|---|\n")
	for _, l := range r.load {
		w("| %s | %s | %s | %s |\n", l.scenario, l.before, l.after, l.took.Round(time.Second))
	}
	if share, where := r.maxDisturbance(); where != "" {
		w("\nCPU spent outside the measured processes (the machine's busy time in /proc/stat less theirs) during the timed runs of scenarios 1 and 2: "+
			"at most **%.1f%%** of the machine's CPU, in %s. "+
			"A round (every subject once) in which a run lost more than %.0f%% is measured again, up to %d times in all; rounds measured again: %s.\n",
			share*100, where, maxDisturbance*100, maxDiscarded, orNone(r.discarded))
	}
	w(`
Everything runs on 127.0.0.1: the load generator, Caddy (one process
serving its own reverse_proxy and the tunnel side by side), the tunnel
client processes (the built `+"`inlets`"+` binary) and the upstream (a
small Go server of the harness, a process of its own). No process is
pinned to a core: all of them share the %d cores under the kernel's
scheduler, baselines and subjects alike, and every Go process runs with
the default GOMAXPROCS. Each scenario runs %d time(s), baselines and
subjects interleaved (baseline, subject, baseline, subject, …); the
figures are medians, ratios are between medians, and every run's figure
is listed.
`, r.machine.cores, p.runs)

	r.writeSmall(w)
	r.writeBulk(w)
	r.writeBodies(w)
	r.writeIdle(w)
	r.writeConc(w)
	r.writeReconnect(w)
	r.writeScale(w)
	r.writeTenants(w)
	r.writeUDP(w)
	r.writeSNI(w)
	r.writeFleet(w)
	r.writeLink(w)
	r.writeVisitors(w)
	r.writeGRPC(w)
	return b.String()
}

type writer func(format string, args ...any)

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

// maxDisturbance is the largest share of the machine's CPU that went
// outside the measured processes in one timed run, and which run.
func (r *results) maxDisturbance() (share float64, where string) {
	cores := float64(r.machine.cores)
	note := func(other time.Duration, d time.Duration, what string) {
		if f := other.Seconds() / (cores * d.Seconds()); where == "" || f > share {
			share, where = f, what
		}
	}
	for tool, set := range map[string]map[string][]httpLoad{toolWrk: r.small, toolHey: r.smallHey, toolWrkNewConns: r.smallNewConns, toolHeyNewConns: r.smallHeyNewConns} {
		d := r.params.loadTime(tool)
		for s, ls := range set {
			for i, l := range ls {
				note(otherCPU(l.cpu), d, fmt.Sprintf("%s run %d of %s", tool, i+1, s))
			}
		}
	}
	for k, rs := range r.bulk {
		for i, x := range rs {
			note(otherCPU(x.cpu), r.params.iperf, fmt.Sprintf("iperf3 run %d, %s, %s", i+1, k.test, k.subject))
		}
	}
	return share, where
}

var smallSubjects = []string{subjectDirect, subjectProxy, subjectHTTPTunnel, subjectTCPTunnel}

func (r *results) smallMedians(set map[string][]httpLoad, s string) (rps, p50, p99, errs float64) {
	ls := set[s]
	var sum float64
	for _, l := range ls {
		sum += l.errors()
	}
	return median(pick(ls, func(l httpLoad) float64 { return l.rps })),
		median(pick(ls, func(l httpLoad) float64 { return l.p50 })),
		median(pick(ls, func(l httpLoad) float64 { return l.p99 })), sum
}

func (r *results) writeSmall(w writer) {
	if len(r.small) == 0 {
		return
	}
	p := r.params
	w("\n## 1. Small HTTP requests\n\n")
	w("GET of a 13-byte body from the upstream, 50 keep-alive connections: `wrk -t %d -c 50 -d %s --latency`. "+
		"One wrk thread: its event loop serves 50 connections at about 7 µs of CPU per request (see the CPU table), "+
		"and a second thread would only take CPU from the processes under test, with which wrk shares the %d cores. "+
		"(a) the upstream directly; (b) Caddy's `reverse_proxy` to it; (c) the HTTP tunnel (the `inlets` handler and an `inlets http client` process); "+
		"(d) the TCP tunnel (`inlets_tcp` and an `inlets tcp client` process), wrk on the tunnel's port. "+
		"Each subject had a %s unmeasured warm-up. Errors are non-2xx/3xx answers plus socket errors, summed over the runs.\n\n",
		wrkThreads, p.wrk, r.machine.cores, p.warmup)
	r.writeLoadTable(w, r.small)
	prps, _, pp99, _ := r.smallMedians(r.small, subjectProxy)
	hrps, _, hp99, _ := r.smallMedians(r.small, subjectHTTPTunnel)
	drps, _, _, _ := r.smallMedians(r.small, subjectDirect)
	trps, _, _, _ := r.smallMedians(r.small, subjectTCPTunnel)
	w("\nRatios: HTTP tunnel / reverse_proxy: requests/s **%.2f**, p99 **%.2f**. TCP tunnel / direct: requests/s **%.2f**. "+
		"reverse_proxy / direct: requests/s %.2f (what Caddy itself costs).\n", ratio(hrps, prps), ratio(hp99, pp99), ratio(trps, drps), ratio(prps, drps))
	w("\nCPU time per request, in µs, by process (from /proc/PID/stat around each wrk run; medians over the runs). " +
		fmt.Sprintf("On %[1]d shared cores, requests/s is roughly %[1]d s of CPU per second divided by the total. ", r.machine.cores) +
		"The last column is the machine's busy time (/proc/stat) that none of these processes used, per request: " +
		"the kernel's network processing outside system calls (softirq), and anything else that ran on the machine; a run whose figure stands out was disturbed:\n")
	r.writeCPUPerRequest(w, r.small)
	if len(r.smallHey) > 0 {
		w("\nCross-check with hey (a Go HTTP client, heavier than wrk), 50 workers, %s per run, in the same rounds:\n\n", p.hey)
		r.writeLoadTable(w, r.smallHey)
		prps, _, pp99, _ := r.smallMedians(r.smallHey, subjectProxy)
		hrps, _, hp99, _ := r.smallMedians(r.smallHey, subjectHTTPTunnel)
		drps, _, _, _ := r.smallMedians(r.smallHey, subjectDirect)
		trps, _, _, _ := r.smallMedians(r.smallHey, subjectTCPTunnel)
		w("\nRatios with hey: HTTP tunnel / reverse_proxy requests/s %.2f, p99 %.2f; TCP tunnel / direct requests/s %.2f.\n",
			ratio(hrps, prps), ratio(hp99, pp99), ratio(trps, drps))
	}
	r.writeSmallNewConns(w)
}

// writeSmallNewConns writes scenario 1's requests each on a new
// connection.
func (r *results) writeSmallNewConns(w writer) {
	set := r.smallNewConns
	if len(set) == 0 {
		return
	}
	p := r.params
	w("\n### Each request on a new connection\n\n"+
		"The same GET, each on a new TCP connection, (a) directly and (d) through the TCP tunnel, in the same rounds, "+
		"with two load generators: `hey -c 50 -z %s -disable-keepalive` (Go's HTTP client, which opens a connection per request), "+
		"the measure of the target, and `wrk -t %d -c 50 -d %s --latency -H 'Connection: close'`. "+
		"The target's 0.45 was set in issue 17 against a Go client's figures (entry 13 below: how they were reproduced). "+
		"wrk costs its machine less per connection than hey, so the processes under test get "+
		"more of the machine's CPU and its ratio shows more of what the tunnel's extra connection costs; it is reported beside hey's, not instead. "+
		"The upstream answers a request that says `Connection: close` with the same header and closes the connection, "+
		"and wrk connects again for the next request, as it does after any answer that does not keep the connection alive. "+
		"Through the TCP tunnel every visitor connection is a stream to the client and a connection of the client's to the upstream. "+
		"wrk's latency starts when it writes the request, once connected: it leaves out the handshake with the upstream or with Caddy's port, "+
		"which requests/s includes, and through the tunnel it includes opening the stream and the client's connection to the upstream. "+
		"Each subject had a %s unmeasured warm-up of its own. "+
		"Every run checks that the upstream accepted at least one connection per request answered, or the scenario fails; "+
		"it accepted, per request answered, with wrk: %s; with hey: %s (the few more are the connection a load generator opens to check the address before it starts, "+
		"and its connections still waiting for an answer when the run ended).\n\n",
		p.hey, wrkThreads, p.wrk, p.warmup, r.connsPerRequest(set), r.connsPerRequest(r.smallHeyNewConns))
	if hey := r.smallHeyNewConns; len(hey) > 0 {
		w("With hey:\n\n")
		r.writeLoadTable(w, hey)
		drps, _, _, _ := r.smallMedians(hey, subjectDirect)
		trps, _, _, _ := r.smallMedians(hey, subjectTCPTunnel)
		w("\nRatio with hey: TCP tunnel / direct requests/s **%.2f**.\n\nCPU time per request, in µs, by process, as above:\n", ratio(trps, drps))
		r.writeCPUPerRequest(w, hey)
		w("\nWith wrk:\n\n")
	}
	r.writeLoadTable(w, set)
	drps, _, _, _ := r.smallMedians(set, subjectDirect)
	trps, _, _, _ := r.smallMedians(set, subjectTCPTunnel)
	w("\nRatio with wrk: TCP tunnel / direct requests/s **%.2f**.\n", ratio(trps, drps))
	w("\nCPU time per request, in µs, by process, as above:\n")
	r.writeCPUPerRequest(w, set)
}

// connsPerRequest is the upstream's connections per request answered, of
// each subject in each run.
func (r *results) connsPerRequest(set map[string][]httpLoad) string {
	var each []string
	for _, s := range smallSubjects {
		if len(set[s]) == 0 {
			continue
		}
		each = append(each, s+" "+runs(pick(set[s], func(l httpLoad) float64 { return ratio(l.upstreamConns, l.requests) }), "%.4f"))
	}
	return strings.Join(each, ", ")
}

func (r *results) writeLoadTable(w writer, set map[string][]httpLoad) {
	r.writeLoadTableOf(w, set, smallSubjects)
}

// writeLoadTableOf is writeLoadTable for the given subjects, in order.
func (r *results) writeLoadTableOf(w writer, set map[string][]httpLoad, subjects []string) {
	w("| subject | requests/s | p50 | p99 | errors | requests/s of each run |\n|---|---|---|---|---|---|\n")
	for _, s := range subjects {
		if len(set[s]) == 0 {
			continue
		}
		rps, p50, p99, errs := r.smallMedians(set, s)
		w("| %s | %.0f | %s | %s | %.0f | %s |\n", s, rps, ms(p50), ms(p99), errs,
			runs(pick(set[s], func(l httpLoad) float64 { return l.rps }), "%.0f"))
	}
}

// bulkBPS is the throughput of each run of a bulk test.
func (r *results) bulkBPS(a iperfArgs, subject string) []float64 {
	return pick(r.bulk[bulkKey{a, subject}], func(x iperfResult) float64 { return x.bps })
}

func (r *results) writeBulk(w writer) {
	if len(r.bulk) == 0 {
		return
	}
	w("\n## 2. Bulk TCP\n\n`iperf3 -J -t %d [-P 8] [-R]` against an iperf3 server, directly and through the TCP tunnel "+
		"(all streams of a test share the one tunnel client's WebSocket). The receiver's throughput, in Gbit/s.\n\n", int(r.params.iperf.Seconds()))
	w("| test | direct | TCP tunnel | tunnel / direct | direct, each run | tunnel, each run |\n|---|---|---|---|---|---|\n")
	for _, a := range bulkTests {
		d, t := r.bulkBPS(a, subjectDirect), r.bulkBPS(a, subjectTCPTunnel)
		if len(d) == 0 {
			continue
		}
		w("| %s | %.2f | %.2f | **%.2f** | %s | %s |\n", a, median(d)/1e9, median(t)/1e9, ratio(median(t), median(d)),
			runs(scale(d, 1e-9), "%.2f"), runs(scale(t, 1e-9), "%.2f"))
	}
	w("\nCPU time per GB received (10⁹ bytes), in seconds, by process (medians over the runs; the load generator is the iperf3 client, the upstream the iperf3 server):\n\n")
	w("| test | subject | iperf3 client | iperf3 server | Caddy | tcp client | total | not in these processes, each run |\n|---|---|---|---|---|---|---|---|\n")
	for _, a := range bulkTests {
		for _, s := range []string{subjectDirect, subjectTCPTunnel} {
			rs := r.bulk[bulkKey{a, s}]
			if len(rs) == 0 {
				continue
			}
			per := func(role string) float64 {
				return median(pick(rs, func(x iperfResult) float64 { return x.cpu[role].Seconds() / (x.bytes / 1e9) }))
			}
			total := median(pick(rs, func(x iperfResult) float64 { return sumCPU(x.cpu).Seconds() / (x.bytes / 1e9) }))
			other := pick(rs, func(x iperfResult) float64 { return otherCPU(x.cpu).Seconds() / (x.bytes / 1e9) })
			w("| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", a, s, per(roleLoad), per(roleUpstream), per(roleCaddy), per(roleTCPClient), total, runs(other, "%.2f"))
		}
	}
}

// sumCPU is the CPU time of the measured processes.
func sumCPU(cpu map[string]time.Duration) time.Duration {
	var t time.Duration
	for _, role := range roles {
		t += cpu[role]
	}
	return t
}

// writeCPUPerRequest writes the CPU time per request of each process, by
// subject.
func (r *results) writeCPUPerRequest(w writer, set map[string][]httpLoad) {
	w("\n| subject | load generator | upstream | Caddy | http client | tcp client | total | not in these processes, each run |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range smallSubjects {
		ls := set[s]
		if len(ls) == 0 {
			continue
		}
		w("| %s |", s)
		for _, role := range roles {
			w(" %.1f |", median(pick(ls, func(l httpLoad) float64 { return float64(l.cpu[role].Microseconds()) / l.requests })))
		}
		w(" %.1f | %s |\n", median(pick(ls, func(l httpLoad) float64 { return float64(sumCPU(l.cpu).Microseconds()) / l.requests })),
			runs(pick(ls, func(l httpLoad) float64 { return float64(otherCPU(l.cpu).Microseconds()) / l.requests }), "%.1f"))
	}
}

func scale(xs []float64, k float64) []float64 {
	return pick(xs, func(x float64) float64 { return x * k })
}

func (r *results) writeBodies(w writer) {
	if len(r.bodies) == 0 {
		return
	}
	w("\n## 3. Large HTTP bodies\n\nOne %d MB body per transfer (one connection, keep-alive, Go's HTTP client in the harness), "+
		"through Caddy's reverse_proxy and through the HTTP tunnel. Every byte is compared with the expected content "+
		"(by the harness for downloads, by the upstream for uploads) and the size checked, so a broken transfer cannot look fast. "+
		"Timed from sending the request to the end of the answer. MB/s (10⁶ bytes). "+
		"A transfer takes a fraction of a second, so each is repeated %d times (interleaved as the other scenarios are), and the median reported.\n\n", r.params.bodySize/1e6, len(r.bodies[bodyKey{directionDownload, subjectProxy}]))
	w("| transfer | reverse_proxy | HTTP tunnel | tunnel / reverse_proxy | reverse_proxy, each run | tunnel, each run |\n|---|---|---|---|---|---|\n")
	for _, dir := range []string{directionDownload, directionUpload} {
		p, t := r.bodies[bodyKey{dir, subjectProxy}], r.bodies[bodyKey{dir, subjectHTTPTunnel}]
		if len(p) == 0 {
			continue
		}
		w("| %s | %.0f | %.0f | **%.2f** | %s | %s |\n", dir, median(p), median(t), ratio(median(t), median(p)), runs(p, "%.0f"), runs(t, "%.0f"))
	}
}

// idleMedians is the median over runs of each step's figures.
func (r *results) idleMedians() []idleStep {
	if len(r.idle) == 0 {
		return nil
	}
	var out []idleStep
	for i, s := range r.idle[0] {
		var ms []memory
		for _, run := range r.idle {
			if i < len(run) {
				ms = append(ms, run[i].mem)
			}
		}
		out = append(out, idleStep{s.clients, medianMemory(ms)})
	}
	return out
}

// perIdleClient is the memory per client between the first and last steps
// of each run, its median over runs.
func (r *results) perIdleClient(f func(memory) float64) (float64, []float64) {
	var per []float64
	for _, run := range r.idle {
		first, last := run[0], run[len(run)-1]
		per = append(per, (f(last.mem)-f(first.mem))/float64(last.clients-first.clients))
	}
	return median(per), per
}

func (r *results) writeIdle(w writer) {
	steps := r.idleMedians()
	if len(steps) < 2 {
		return
	}
	first, last := steps[0], steps[len(steps)-1]
	w("\n## 4. Idle clients\n\nA fresh Caddy per run; clients connected and idle. The clients are sessions of the client library "+
		"(`client.New`, `Run`) inside the harness process, one WebSocket each, each announcing a host of its own: the server cannot tell them from client processes. "+
		"After all are connected (counted by Caddy's `/inlets/status` admin route) and 2s of rest, %d samples a second apart; their median. "+
		"Before each sample Caddy collects its garbage (its admin endpoint's `/debug/pprof/heap?gc=1` runs `runtime.GC`). "+
		"RSS is Caddy's VmRSS, which the Go runtime shrinks only gradually after a collection, so it is the conservative figure and the one the target is checked against; "+
		"heap in use is Caddy's `go_memstats_heap_inuse_bytes` (live objects and the spans holding them, without goroutine stacks); goroutines from its `/debug/pprof/goroutine`.\n\n", r.params.memorySamples)
	w("| idle clients | RSS | heap in use | goroutine stacks | goroutines |\n|---|---|---|---|---|\n")
	for _, s := range steps {
		w("| %d | %s | %s | %s | %.0f |\n", s.clients, mib(s.mem.rss), mib(s.mem.heapInuse), mib(s.mem.stackInuse), s.mem.goroutines)
	}
	rss, rssRuns := r.perIdleClient(func(m memory) float64 { return m.rss })
	heap, heapRuns := r.perIdleClient(func(m memory) float64 { return m.heapInuse })
	stack, _ := r.perIdleClient(func(m memory) float64 { return m.stackInuse })
	gor, _ := r.perIdleClient(func(m memory) float64 { return m.goroutines })
	w("\nPer client, (figure at %d − figure at %d) / %d: RSS **%.1f KiB** (runs: %s); heap in use %.1f KiB (runs: %s); "+
		"goroutine stacks %.1f KiB; %.1f goroutines.\n",
		last.clients, first.clients, last.clients-first.clients, rss/1024, runs(scale(rssRuns, 1.0/1024), "%.1f"),
		heap/1024, runs(scale(heapRuns, 1.0/1024), "%.1f"), stack/1024, gor)
}

func (r *results) writeConc(w writer) {
	if len(r.conc) == 0 {
		return
	}
	w("\n## 5. Concurrency\n\n%d TCP connections to the upstream's echo server, through the TCP tunnel and one `inlets tcp client` process, "+
		"opened %d at a time by the harness. Each echoes a message when it opens and again once all are open, so all were alive at once; "+
		"Caddy's memory is sampled with all open (median of %d samples a second apart), then all are closed and Caddy must count none left open. A fresh Caddy and client per run.\n\n",
		r.params.conns, dialers, r.params.memorySamples)
	w("| run | errors | open in Caddy | opening took | RSS before → all open | heap in use | goroutine stacks | goroutines | RSS per connection | heap per connection |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for i, c := range r.conc {
		w("| %d | %d | %.0f | %s | %s → %s | %s → %s | %s → %s | %.0f → %.0f | %.1f KiB | %.1f KiB |\n", i+1, c.errors, c.serverOpen, c.openTime.Round(time.Millisecond),
			mib(c.before.rss), mib(c.open.rss), mib(c.before.heapInuse), mib(c.open.heapInuse), mib(c.before.stackInuse), mib(c.open.stackInuse),
			c.before.goroutines, c.open.goroutines,
			(c.open.rss-c.before.rss)/float64(c.conns)/1024, (c.open.heapInuse-c.before.heapInuse)/float64(c.conns)/1024)
	}
}

func (r *results) reconnectMedians() (service, caddyUp float64) {
	return median(pick(r.reconnect, func(x reconnectResult) float64 { return x.service.Seconds() })),
		median(pick(r.reconnect, func(x reconnectResult) float64 { return x.caddyUp.Seconds() }))
}

func (r *results) writeReconnect(w writer) {
	if len(r.reconnect) == 0 {
		return
	}
	service, caddyUp := r.reconnectMedians()
	w("\n## 6. Reconnect\n\nAn `inlets http client` process connected; Caddy stopped (SIGTERM, waiting for the process to exit) and started again with the same config, %d times. "+
		"Timed from starting the new process until a request through the tunnel first gets the upstream's answer (polled every 15ms); "+
		"beside it, until Caddy's admin endpoint first answers (Caddy's own start). The client's backoff after losing its session is 250ms ± 50%%, doubling after each failed attempt.\n\n", r.params.restarts)
	w("| | median | each restart |\n|---|---|---|\n")
	w("| back in service | **%s** | %s |\n", seconds(service), runs(pick(r.reconnect, func(x reconnectResult) float64 { return x.service.Seconds() }), "%.3fs"))
	w("| Caddy's admin endpoint up | %s | %s |\n", seconds(caddyUp), runs(pick(r.reconnect, func(x reconnectResult) float64 { return x.caddyUp.Seconds() }), "%.3fs"))
}

func seconds(s float64) string { return fmt.Sprintf("%.3fs", s) }

// targets checks the targets against what was measured.
func (r *results) targets() []target {
	var ts []target
	if len(r.small) > 0 {
		prps, _, pp99, _ := r.smallMedians(r.small, subjectProxy)
		hrps, _, hp99, _ := r.smallMedians(r.small, subjectHTTPTunnel)
		drps, _, _, _ := r.smallMedians(r.small, subjectDirect)
		trps, _, _, _ := r.smallMedians(r.small, subjectTCPTunnel)
		ts = append(ts,
			target{"HTTP tunnel ≥ 0.9 × reverse_proxy requests/s", fmt.Sprintf("%.2f (%.0f vs %.0f req/s)", ratio(hrps, prps), hrps, prps), ratio(hrps, prps) >= 0.9},
			target{"HTTP tunnel p99 ≤ 1.2 × reverse_proxy p99", fmt.Sprintf("%.2f (%s vs %s)", ratio(hp99, pp99), ms(hp99), ms(pp99)), hp99 > 0 && ratio(hp99, pp99) <= 1.2},
			target{"TCP tunnel ≥ 0.4 × direct requests/s (keep-alive HTTP)", fmt.Sprintf("%.2f (%.0f vs %.0f req/s)", ratio(trps, drps), trps, drps), ratio(trps, drps) >= 0.4},
		)
	}
	if len(r.smallHeyNewConns) > 0 {
		drps, _, _, _ := r.smallMedians(r.smallHeyNewConns, subjectDirect)
		trps, _, _, _ := r.smallMedians(r.smallHeyNewConns, subjectTCPTunnel)
		wd, _, _, _ := r.smallMedians(r.smallNewConns, subjectDirect)
		wt, _, _, _ := r.smallMedians(r.smallNewConns, subjectTCPTunnel)
		ts = append(ts, target{"TCP tunnel ≥ 0.45 × direct requests/s, small requests each on a new connection (hey -disable-keepalive)",
			fmt.Sprintf("%.2f (%.0f vs %.0f req/s); with wrk %.2f", ratio(trps, drps), trps, drps, ratio(wt, wd)), ratio(trps, drps) >= 0.45})
	}
	for _, a := range bulkTests {
		d, t := r.bulkBPS(a, subjectDirect), r.bulkBPS(a, subjectTCPTunnel)
		if len(d) == 0 {
			continue
		}
		q := ratio(median(t), median(d))
		ts = append(ts, target{"TCP bulk ≥ 0.25 × direct, " + a.String(),
			fmt.Sprintf("%.2f (%.2f vs %.2f Gbit/s)", q, median(t)/1e9, median(d)/1e9), q >= 0.25})
	}
	if steps := r.idleMedians(); len(steps) >= 2 {
		last := steps[len(steps)-1].clients
		rss, _ := r.perIdleClient(func(m memory) float64 { return m.rss })
		heap, _ := r.perIdleClient(func(m memory) float64 { return m.heapInuse })
		ts = append(ts, target{fmt.Sprintf("≤ 40 KiB server memory per idle client at %d clients", last),
			fmt.Sprintf("%.1f KiB RSS (heap in use %.1f KiB)", rss/1024, heap/1024), rss <= 40*1024})
	}
	if len(r.conc) > 0 {
		errs, open := 0, 0.0
		for _, c := range r.conc {
			errs += c.errors
			open = max(open, c.serverOpen)
		}
		ts = append(ts, target{fmt.Sprintf("%d concurrent tunneled connections, zero errors", r.params.conns),
			fmt.Sprintf("%d errors in %d runs; %.0f open in Caddy at once", errs, len(r.conc), open), errs == 0 && int(open) == r.params.conns})
	}
	if len(r.reconnect) > 0 {
		service, _ := r.reconnectMedians()
		ts = append(ts, target{"back in service ≤ 1s (median) after a Caddy restart", seconds(service), service <= 1})
	}
	return slices.Concat(ts, r.scaleTargets(), r.tenantTargets(), r.udpTargets(), r.sniTargets(), r.linkTargets(), r.grpcTargets())
}
