// Command inletsbench measures caddy-inlets against serving directly, on
// loopback, and writes BENCHMARKS.md. bench/run.sh builds what it needs and
// runs it; see docs/benchmarks.md.
//
//	inletsbench [--quick] [--out FILE] [--runs N] [--only LIST]
//	inletsbench upstream --http ADDR --echo ADDR   (the upstream it starts)
//	inletsbench grpc-upstream --listen ADDR        (scenario grpc's upstream)
//
// Every figure is taken in the same invocation as its baseline, the two
// interleaved run after run; each scenario is repeated and its median
// reported.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// params sizes a harness run.
type params struct {
	runs          int             // of each scenario
	wrk, warmup   time.Duration   // per wrk run, and the unmeasured run before
	hey           time.Duration   // per hey run (the cross-check)
	iperf         time.Duration   // per iperf3 run
	bodySize      int64           // of each large HTTP body
	bodyRuns      int             // transfers of each kind; each takes a fraction of a second
	idle          []int           // idle clients at each step
	conns         int             // concurrent TCP connections
	restarts      int             // Caddy restarts in the reconnect scenario
	scale         []int           // clients at each step of the scale scenario
	memorySamples int             // a second apart, of which the median is taken
	tunnels       []int           // configured tunnels at each step of the tenants scenario
	otherTunnels  int             // configured besides the one that small requests go through
	configChanges int             // reloads, and tunnels created, at each step
	authRequests  int             // GET /status with a tunnel's token, at each step
	linkRTTs      []time.Duration // round-trip times of the link scenario
	linkConns     int             // new connections of each subject, for the first byte
	linkSize      int64           // bytes of the link scenario's download, and of its 8 at once in all
	linkSmall     int             // small requests one after the other, with and without a download
	grpc          time.Duration   // per run of gRPC calls
	grpcWarmup    time.Duration   // of each gRPC subject, with the most callers
	grpcCallers   []int           // concurrent gRPC callers of each run
}

var (
	fullParams = params{runs: 3, wrk: 10 * time.Second, warmup: 2 * time.Second, hey: 5 * time.Second,
		iperf: 8 * time.Second, bodySize: 100e6, bodyRuns: 7, idle: []int{1, 100, 1000}, conns: 10000, restarts: 5, memorySamples: 5,
		scale: []int{1000, 2000, 5000}, tunnels: []int{1, 1000, 10000}, otherTunnels: 1000, configChanges: 5, authRequests: 5000,
		linkRTTs: []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}, linkConns: 20, linkSize: 300e6, linkSmall: 200,
		grpc: 2 * time.Second, grpcWarmup: time.Second, grpcCallers: []int{16, 64}}
	// quickParams keeps every code path and finishes in about two minutes,
	// for CI: its figures mean nothing.
	quickParams = params{runs: 1, wrk: 2 * time.Second, warmup: time.Second, hey: time.Second,
		iperf: 2 * time.Second, bodySize: 10e6, bodyRuns: 1, idle: []int{1, 10, 50}, conns: 200, restarts: 1, memorySamples: 2,
		scale: []int{20, 100}, tunnels: []int{1, 100}, otherTunnels: 100, configChanges: 3, authRequests: 500,
		linkRTTs: []time.Duration{50 * time.Millisecond}, linkConns: 5, linkSize: 20e6, linkSmall: 50,
		grpc: time.Second, grpcWarmup: 500 * time.Millisecond, grpcCallers: []int{16, 64}}
)

// scenario is one of the harness's measurements.
type scenario struct {
	name string
	run  func(*harness, context.Context) error
	// traffic scenarios share one set of servers (h.traffic).
	traffic bool
}

var scenarios = []scenario{
	{"small", (*harness).small, true},
	{"bulk", (*harness).bulk, true},
	{"bodies", (*harness).bodies, true},
	{"idle", (*harness).idle, false},
	{"concurrency", (*harness).concurrency, false},
	{"reconnect", (*harness).reconnect, false},
	{"scale", (*harness).scale, false},
	{"tenants", (*harness).tenants, false},
	{"udp", (*harness).udp, false},
	{"sni", (*harness).sni, false},
	{"fleet", (*harness).fleet, false},
	{"link", (*harness).link, false},
	{"visitors", (*harness).visitors, false},
	{"grpc", (*harness).grpc, false},
}

// harness is one run of the benchmarks.
type harness struct {
	p     params
	quick bool
	keep  bool
	env   *env
	res   *results

	up      *upstream
	traffic *traffic // the servers of scenarios small, bulk and bodies
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "upstream":
			upstreamMain(os.Args[2:])
			return
		case "grpc-upstream":
			grpcUpstreamMain(os.Args[2:])
			return
		}
	}
	quick := flag.Bool("quick", false, "one short run of each scenario, to check that all of them work (CI); figures mean nothing")
	out := flag.String("out", "BENCHMARKS.md", "where to write the report; only its measured part is replaced")
	runs := flag.Int("runs", 0, "runs of each scenario (default 3, or 1 with --quick)")
	bin := flag.String("bin", "bin", "directory with the built caddy and inlets")
	keep := flag.Bool("keep", false, "keep the temporary directory of configs and logs, and say where it is")
	only := flag.String("only", "", "comma-separated scenarios to run (default all): "+scenarioNames())
	flag.Parse()

	h := &harness{p: fullParams, quick: *quick, keep: *keep, res: newResults()}
	if *quick {
		h.p = quickParams
	}
	if *runs > 0 {
		h.p.runs = *runs
	}
	selected := scenarios
	if *only != "" {
		selected = nil
		for name := range strings.SplitSeq(*only, ",") {
			i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
			if i < 0 {
				fatalf("--only: no scenario %q (have %s)", name, scenarioNames())
			}
			selected = append(selected, scenarios[i])
		}
	}
	os.Exit(h.main(*bin, *out, selected))
}

func (h *harness) main(bin, out string, selected []scenario) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := newEnv(bin)
	if err != nil {
		fatalf("%v", err)
	}
	h.env = e
	defer e.close(h.keep)

	h.res.machine = describeMachine(ctx, bin)
	h.res.quick = h.quick
	h.res.params = h.p
	logf("%s", h.res.machine.summary())
	if h.up, err = e.startUpstream(); err != nil {
		logf("%v", err)
		return 1
	}
	for i, s := range selected {
		load := loadavg()
		logf("== %s", s.name)
		start := time.Now()
		err := s.run(h, ctx)
		h.res.load = append(h.res.load, scenarioLoad{s.name, load, loadavg(), time.Since(start)})
		if ctx.Err() != nil {
			logf("interrupted")
			return 130
		}
		if err != nil {
			logf("%s FAILED: %v", s.name, err)
			h.res.failures = append(h.res.failures, fmt.Sprintf("%s: %v", s.name, err))
		}
		if !slices.ContainsFunc(selected[i+1:], func(s scenario) bool { return s.traffic }) {
			h.stopTraffic()
		}
	}

	report := h.res.markdown()
	if err := writeReport(out, report); err != nil {
		fatalf("writing %s: %v", out, err)
	}
	fmt.Println(report)
	logf("wrote %s", out)
	if len(h.res.failures) > 0 {
		logf("%d scenario(s) failed", len(h.res.failures))
		return 1
	}
	if h.quick && h.res.errorCount() > 0 {
		logf("--quick: %d error(s) counted in the figures", int(h.res.errorCount()))
		return 1
	}
	return 0
}

func scenarioNames() string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return strings.Join(names, ",")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "inletsbench: "+format+"\n", args...)
	os.Exit(1)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
