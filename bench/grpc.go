package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The gRPC upstream of scenario 14 (`inletsbench grpc-upstream`) serves
// one unary method, written without generated code: its messages are
// protobuf's well-known wrappers.
//
//	service inlets.bench.Echo {
//	  rpc Say(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	}
//
// Say answers with the value it was sent.
const (
	grpcService = "inlets.bench.Echo"
	grpcSay     = "/" + grpcService + "/Say"
)

// grpcHost is the host the tunnel client announces for the gRPC
// upstream, and the authority of every call, whichever way it goes.
const grpcHost = "grpc.example.com"

// grpcCallersPerConn is how many callers share one grpc.ClientConn (one
// HTTP/2 connection), for every subject alike: one connection for all
// would measure a single connection's reader and writer, which no proxy
// in front of many clients sees.
const grpcCallersPerConn = 8

// grpcCallTimeout bounds each call, as wrk's --timeout bounds a request.
const grpcCallTimeout = 5 * time.Second

var grpcEcho = grpc.ServiceDesc{
	ServiceName: grpcService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Say",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		}}},
}

// grpcUpstreamMain is `inletsbench grpc-upstream --listen ADDR`: a grpc-go
// server in clear text, HTTP/2 with prior knowledge (an h2c:// upstream).
func grpcUpstreamMain(args []string) {
	fs := flag.NewFlagSet("grpc-upstream", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "address of the gRPC server")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&grpcEcho, struct{}{})
	log.Fatal(s.Serve(ln))
}

// startGRPCUpstream runs `inletsbench grpc-upstream` on a free port until
// it accepts connections, and returns the process and its address.
func (e *env) startGRPCUpstream() (*proc, string, error) {
	addr := loopback(freePort())
	p, err := e.start("grpc-upstream", e.self, "grpc-upstream", "--listen", addr)
	if err != nil {
		return nil, "", err
	}
	return p, addr, p.waitFor("the gRPC upstream", 10*time.Second, func() error { return canDial(addr) })
}

// grpcKey names one set of runs of scenario 14.
type grpcKey struct {
	callers int
	subject string
}

// grpcLoad is one run of gRPC unary calls.
type grpcLoad struct {
	cps      float64 // calls answered per second
	p50, p99 float64 // seconds
	calls    float64 // answered with the value sent
	errors   float64 // failed, or answered with another value
	// cpu is the CPU time each process used during the run, by role; the
	// harness's own, whose callers are the load, under roleLoad.
	cpu map[string]time.Duration
}

// grpc is scenario 14: unary gRPC calls, from the harness's own callers
// (grpc-go, in clear text, HTTP/2 with prior knowledge), to a grpc-go
// upstream directly, through Caddy's `reverse_proxy h2c://` and through
// the HTTP tunnel (the inlets handler and an `inlets http client` with
// an h2c:// upstream), on one Caddy whose servers speak h2c, so that
// visitors reach Caddy as they reach the upstream: HTTP/2, no TLS.
func (h *harness) grpc(ctx context.Context) error {
	e := h.env
	up, upAddr, err := e.startGRPCUpstream()
	if err != nil {
		return err
	}
	defer up.stop()
	tunnelPort, proxyPort := freePort(), freePort()
	c, err := e.startCaddy(caddyfile{admin: freePort(), tunnel: tunnelPort,
		globals: "\tservers {\n\t\tprotocols h1 h2 h2c\n\t}\n",
		sites:   fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1\n\treverse_proxy h2c://%s\n}\n", proxyPort, upAddr),
	})
	if err != nil {
		return err
	}
	defer c.stop()
	cl, err := e.httpClientProcWith(loopback(tunnelPort), e.token, grpcHost+"=h2c://"+upAddr)
	if err != nil {
		return err
	}
	defer cl.stop()
	if err := c.waitClients(1, 30*time.Second); err != nil {
		return err
	}
	subjects := []struct{ name, addr string }{
		{subjectDirect, upAddr},
		{subjectProxy, loopback(proxyPort)},
		{subjectHTTPTunnel, loopback(tunnelPort)},
	}
	most := slices.Max(h.p.grpcCallers)
	for _, s := range subjects {
		if err := cl.waitFor(s.name+" answering Say", 10*time.Second, func() error { return checkGRPC(ctx, s.addr) }); err != nil {
			return err
		}
		logf("warm-up %s", s.name)
		if _, err := loadGRPC(ctx, s.addr, most, h.p.grpcWarmup); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	procs := map[string]*proc{roleUpstream: up, roleCaddy: c.proc, roleHTTPClient: cl}
	for run := 0; run < h.p.runs; {
		round := map[grpcKey]grpcLoad{}
		var disturbed float64
		for _, callers := range h.p.grpcCallers {
			for _, s := range subjects {
				l, err := measureGRPC(ctx, s.addr, callers, h.p.grpc, procs)
				if err != nil {
					return fmt.Errorf("%s, %d callers: %w", s.name, callers, err)
				}
				logf("run %d gRPC %3d callers %-13s %8.0f calls/s  p50 %s  p99 %s  errors %.0f  CPU elsewhere %.1fs",
					run+1, callers, s.name, l.cps, ms(l.p50), ms(l.p99), l.errors, otherCPU(l.cpu).Seconds())
				round[grpcKey{callers, s.name}] = l
				disturbed = max(disturbed, disturbance(l.cpu, h.p.grpc))
			}
		}
		if h.discard("grpc", run, disturbed) {
			continue
		}
		for k, l := range round {
			h.res.grpc[k] = append(h.res.grpc[k], l)
		}
		run++
	}
	return nil
}

// measureGRPC is loadGRPC with the CPU time of procs, and of the harness
// itself, whose callers are the load, during the run.
func measureGRPC(ctx context.Context, addr string, callers int, d time.Duration, procs map[string]*proc) (grpcLoad, error) {
	self, _ := cpuTime(os.Getpid())
	cpu := newCPUMeter(procs)
	l, err := loadGRPC(ctx, addr, callers, d)
	if err != nil {
		return l, err
	}
	l.cpu = cpu.stop()
	after, _ := cpuTime(os.Getpid())
	l.cpu[roleLoad] = after - self
	return l, nil
}

// dialGRPC opens n connections to addr, each with the authority grpcHost,
// and waits until all are ready, so that no run times a handshake.
func dialGRPC(ctx context.Context, addr string, n int) ([]*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(grpcHost))
		if err != nil {
			closeGRPC(conns)
			return nil, err
		}
		conns = append(conns, conn)
		conn.Connect()
	}
	for _, conn := range conns {
		for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
			if !conn.WaitForStateChange(ctx, state) {
				closeGRPC(conns)
				return nil, fmt.Errorf("connecting to %s: still %s after 10s", addr, state)
			}
		}
	}
	return conns, nil
}

func closeGRPC(conns []*grpc.ClientConn) {
	for _, c := range conns {
		c.Close()
	}
}

// say calls Say once with in and checks that the answer is in's value.
func say(ctx context.Context, conn *grpc.ClientConn, in *wrapperspb.StringValue) error {
	ctx, cancel := context.WithTimeout(ctx, grpcCallTimeout)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, grpcSay, in, out); err != nil {
		return err
	}
	if out.Value != in.Value {
		return fmt.Errorf("Say(%q) answered %q", in.Value, out.Value)
	}
	return nil
}

// checkGRPC makes one call through addr, so that an error is seen before
// anything is timed.
func checkGRPC(ctx context.Context, addr string) error {
	conns, err := dialGRPC(ctx, addr, 1)
	if err != nil {
		return err
	}
	defer closeGRPC(conns)
	return say(ctx, conns[0], wrapperspb.String(smallBody))
}

// loadGRPC has callers goroutines call Say through addr, each one call
// after the other, for d, over callers/grpcCallersPerConn connections
// (at least one), and measures the calls answered per second and their
// latency. Calls started before d has passed are waited for.
func loadGRPC(ctx context.Context, addr string, callers int, d time.Duration) (grpcLoad, error) {
	conns, err := dialGRPC(ctx, addr, max(1, callers/grpcCallersPerConn))
	if err != nil {
		return grpcLoad{}, err
	}
	defer closeGRPC(conns)
	var (
		mu    sync.Mutex
		lat   []float64
		errs  float64
		first error
		wg    sync.WaitGroup
	)
	in := wrapperspb.String(smallBody)
	start := time.Now()
	end := start.Add(d)
	for i := range callers {
		conn := conns[i%len(conns)]
		wg.Go(func() {
			mine := make([]float64, 0, 1024)
			var bad float64
			var why error
			for ctx.Err() == nil && time.Now().Before(end) {
				t := time.Now()
				if err := say(ctx, conn, in); err != nil {
					bad++
					why = cmp.Or(why, err)
					continue
				}
				mine = append(mine, time.Since(t).Seconds())
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			first = cmp.Or(first, why)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return grpcLoad{}, err
	}
	if len(lat) == 0 {
		return grpcLoad{}, fmt.Errorf("no call through %s succeeded (%.0f errors, the first: %v)", addr, errs, first)
	}
	if first != nil {
		logf("gRPC through %s: %.0f errors, the first: %v", addr, errs, first)
	}
	slices.Sort(lat)
	return grpcLoad{cps: float64(len(lat)) / elapsed, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99),
		calls: float64(len(lat)), errors: errs}, nil
}

var grpcSubjects = []string{subjectDirect, subjectProxy, subjectHTTPTunnel}

// grpcMedians is the median over runs of calls/s, p50 and p99, and the
// errors summed.
func (r *results) grpcMedians(k grpcKey) (cps, p50, p99, errs float64) {
	ls := r.grpc[k]
	for _, l := range ls {
		errs += l.errors
	}
	return median(pick(ls, func(l grpcLoad) float64 { return l.cps })),
		median(pick(ls, func(l grpcLoad) float64 { return l.p50 })),
		median(pick(ls, func(l grpcLoad) float64 { return l.p99 })), errs
}

// writeGRPC is scenario 14's section.
func (r *results) writeGRPC(w writer) {
	if len(r.grpc) == 0 {
		return
	}
	p := r.params
	w("\n## 14. gRPC unary calls\n\n"+
		"Unary calls of `Say(StringValue) returns (StringValue)`, 13 bytes each way, answered by a grpc-go server of the harness (a process of its own) "+
		"with the value it was sent, checked by the caller. The callers are the harness's own (grpc-go; ghz is not packaged): N goroutines, each calling "+
		"one call after the other for %s, over N/%d `grpc.ClientConn`s (each one HTTP/2 connection), with the authority `%s`, in clear text "+
		"(HTTP/2 with prior knowledge) whichever way they go: (a) the upstream directly; (b) Caddy's `reverse_proxy h2c://` to it; "+
		"(c) the HTTP tunnel, the inlets handler and an `inlets http client --upstream %s=h2c://…` process. Caddy, one process for (b) and (c), "+
		"serves both sites with `servers { protocols h1 h2 h2c }`. Each subject had a %s unmeasured warm-up with %d callers; "+
		"the runs of every caller count and subject are interleaved in each round. Errors are failed calls and wrong answers, summed over the runs.\n\n",
		p.grpc, grpcCallersPerConn, grpcHost, grpcHost, p.grpcWarmup, slices.Max(p.grpcCallers))
	w("| callers | subject | calls/s | p50 | p99 | errors | calls/s of each run |\n|---|---|---|---|---|---|---|\n")
	for _, n := range p.grpcCallers {
		for _, s := range grpcSubjects {
			k := grpcKey{n, s}
			if len(r.grpc[k]) == 0 {
				continue
			}
			cps, p50, p99, errs := r.grpcMedians(k)
			w("| %d | %s | %.0f | %s | %s | %.0f | %s |\n", n, s, cps, ms(p50), ms(p99), errs, runs(pick(r.grpc[k], func(l grpcLoad) float64 { return l.cps }), "%.0f"))
		}
	}
	w("\n| callers | tunnel / reverse_proxy calls/s | tunnel / reverse_proxy p99 | tunnel / direct calls/s | reverse_proxy / direct calls/s |\n|---|---|---|---|---|\n")
	for _, n := range p.grpcCallers {
		dcps, _, _, _ := r.grpcMedians(grpcKey{n, subjectDirect})
		pcps, _, pp99, _ := r.grpcMedians(grpcKey{n, subjectProxy})
		tcps, _, tp99, _ := r.grpcMedians(grpcKey{n, subjectHTTPTunnel})
		w("| %d | **%.2f** | %.2f | **%.2f** | %.2f |\n", n, ratio(tcps, pcps), ratio(tp99, pp99), ratio(tcps, dcps), ratio(pcps, dcps))
	}
	w("\nCPU time per call, in µs, by process (from /proc/PID/stat around each run; the load generator is the harness process; medians over the runs), and the machine's busy time that none of them used, per call:\n\n")
	w("| callers | subject | load generator | upstream | Caddy | http client | total | not in these processes, each run |\n|---|---|---|---|---|---|---|---|\n")
	for _, n := range p.grpcCallers {
		for _, s := range grpcSubjects {
			ls := r.grpc[grpcKey{n, s}]
			if len(ls) == 0 {
				continue
			}
			per := func(cpu func(grpcLoad) time.Duration) float64 {
				return median(pick(ls, func(l grpcLoad) float64 { return float64(cpu(l).Microseconds()) / l.calls }))
			}
			w("| %d | %s |", n, s)
			for _, role := range []string{roleLoad, roleUpstream, roleCaddy, roleHTTPClient} {
				w(" %.1f |", per(func(l grpcLoad) time.Duration { return l.cpu[role] }))
			}
			w(" %.1f | %s |\n", per(func(l grpcLoad) time.Duration { return sumCPU(l.cpu) }),
				runs(pick(ls, func(l grpcLoad) float64 { return float64(otherCPU(l.cpu).Microseconds()) / l.calls }), "%.1f"))
		}
	}
}

// grpcTargets is scenario 14's: gRPC through the tunnel at least 0.9 ×
// Caddy's own reverse_proxy, at each caller count.
func (r *results) grpcTargets() []target {
	var ts []target
	for _, n := range r.params.grpcCallers {
		pcps, _, _, _ := r.grpcMedians(grpcKey{n, subjectProxy})
		tcps, _, _, _ := r.grpcMedians(grpcKey{n, subjectHTTPTunnel})
		if pcps == 0 || tcps == 0 {
			continue
		}
		q := ratio(tcps, pcps)
		ts = append(ts, target{fmt.Sprintf("gRPC unary calls through the HTTP tunnel ≥ 0.9 × reverse_proxy calls/s, %d callers", n),
			fmt.Sprintf("%.2f (%.0f vs %.0f calls/s)", q, tcps, pcps), q >= 0.9})
	}
	return ts
}

// grpcErrors is the failed calls of scenario 14, all runs.
func (r *results) grpcErrors() float64 {
	var n float64
	for _, ls := range r.grpc {
		for _, l := range ls {
			n += l.errors
		}
	}
	return n
}
