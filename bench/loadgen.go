package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The load generators are Debian's wrk, hey and iperf3, run as processes;
// this file runs them and reads their output.

// httpLoad is the outcome of one wrk or hey run.
type httpLoad struct {
	rps      float64 // requests per second
	p50, p99 float64 // seconds
	requests float64 // completed, whatever their status
	non2xx   float64 // responses with another status (wrk: other than 2xx or 3xx)
	sockErrs float64 // connect, read, write errors and timeouts
	// cpu is the CPU time each process used during the run, by role; the
	// load generator's is under roleLoad.
	cpu map[string]time.Duration
	// upstreamConns counts the connections the upstream accepted during
	// the run.
	upstreamConns float64
}

func (l httpLoad) errors() float64 { return l.non2xx + l.sockErrs }

// wrkThreads is wrk's thread count. One event-loop thread serves 50
// keep-alive connections at about 7µs of CPU per request; on 2 cores
// shared with the processes under test, a second thread would only take
// CPU from them.
const wrkThreads = 1

// runWrk runs wrk with 50 keep-alive connections against url for d.
func runWrk(ctx context.Context, url, host string, d time.Duration) (httpLoad, error) {
	return runWrkConns(ctx, url, host, d, 50)
}

// runWrkNewConns runs wrk with 50 connections against url for d, each
// request on a new connection: the request says Connection: close, the
// server answers with the same and closes, and wrk connects again for the
// next request, as it does after any answer that does not keep the
// connection alive. wrk's latency starts when it writes the request, once
// connected: it leaves out the handshake, which requests/s includes.
func runWrkNewConns(ctx context.Context, url, host string, d time.Duration) (httpLoad, error) {
	return runWrkConns(ctx, url, host, d, 50, "Connection: close")
}

// runWrkConns runs wrk with conns connections against url for d, each
// request with the Host host and headers: kept alive unless headers say
// otherwise.
func runWrkConns(ctx context.Context, url, host string, d time.Duration, conns int, headers ...string) (httpLoad, error) {
	args := []string{"-t", strconv.Itoa(wrkThreads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Seconds())),
		"--latency", "--timeout", "5s", "-H", "Host: " + host}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, cpu, err := run(ctx, d+30*time.Second, "wrk", append(args, url)...)
	if err != nil {
		return httpLoad{}, err
	}
	l, err := parseWrk(string(out))
	l.cpu = map[string]time.Duration{roleLoad: cpu}
	return l, err
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkRequests = regexp.MustCompile(`(?m)^\s+(\d+) requests in `)
	wrkSockErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk's report (with --latency).
func parseWrk(out string) (httpLoad, error) {
	var l httpLoad
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return l, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	l.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		l.requests, _ = strconv.ParseFloat(m[1], 64)
	}
	found := 0
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		v *= map[string]float64{"us": 1e-6, "ms": 1e-3, "s": 1}[m[3]]
		if m[1] == "50" {
			l.p50 = v
		} else {
			l.p99 = v
		}
		found++
	}
	if found != 2 {
		return l, fmt.Errorf("no 50%% and 99%% latency in wrk's output (run it with --latency):\n%s", out)
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseFloat(s, 64)
			l.sockErrs += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		l.non2xx, _ = strconv.ParseFloat(m[1], 64)
	}
	return l, nil
}

// runHey runs hey with 50 workers against url for d, with more of its
// flags: keep-alive unless more says -disable-keepalive.
func runHey(ctx context.Context, url, host string, d time.Duration, more ...string) (httpLoad, error) {
	args := append([]string{"-c", "50", "-z", fmt.Sprintf("%ds", int(d.Seconds())), "-t", "5", "-host", host}, more...)
	out, cpu, err := run(ctx, d+30*time.Second, "hey", append(args, url)...)
	if err != nil {
		return httpLoad{}, err
	}
	l, err := parseHey(string(out))
	l.cpu = map[string]time.Duration{roleLoad: cpu}
	return l, err
}

var (
	heyRPS     = regexp.MustCompile(`(?m)^\s+Requests/sec:\s+([0-9.]+)`)
	heyLatency = regexp.MustCompile(`(?m)^\s+(50|99)% in ([0-9.]+) secs`)
	heyStatus  = regexp.MustCompile(`(?m)^\s+\[(\d+)\]\s+(\d+) responses`)
	heyErrors  = regexp.MustCompile(`(?m)^\s+\[(\d+)\]\s+(Get|Post|Head|Put|Delete|dial|read|write).*$`)
)

// parseHey reads hey's summary.
func parseHey(out string) (httpLoad, error) {
	var l httpLoad
	m := heyRPS.FindStringSubmatch(out)
	if m == nil {
		return l, fmt.Errorf("no Requests/sec in hey's output:\n%s", out)
	}
	l.rps, _ = strconv.ParseFloat(m[1], 64)
	found := 0
	for _, m := range heyLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "50" {
			l.p50 = v
		} else {
			l.p99 = v
		}
		found++
	}
	if found != 2 {
		return l, fmt.Errorf("no 50%% and 99%% latency in hey's output:\n%s", out)
	}
	for _, m := range heyStatus.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.ParseFloat(m[2], 64)
		l.requests += n
		if !strings.HasPrefix(m[1], "2") {
			l.non2xx += n
		}
	}
	if _, errs, ok := strings.Cut(out, "Error distribution:"); ok {
		for _, m := range heyErrors.FindAllStringSubmatch(errs, -1) {
			n, _ := strconv.ParseFloat(m[1], 64)
			l.sockErrs += n
		}
	}
	return l, nil
}

// iperfArgs describes one iperf3 test: streams in parallel, and reverse
// (-R: the server sends, as in a download through the tunnel).
type iperfArgs struct {
	streams int
	reverse bool
}

func (a iperfArgs) String() string {
	dir := "client → server"
	if a.reverse {
		dir = "server → client (-R)"
	}
	s := "1 stream"
	if a.streams > 1 {
		s = fmt.Sprintf("%d streams", a.streams)
	}
	return s + ", " + dir
}

// iperfResult is one iperf3 run.
type iperfResult struct {
	bps   float64 // the receiver's throughput, bits per second
	bytes float64 // received
	cpu   map[string]time.Duration
}

// runIperf runs an iperf3 client against port for d.
func runIperf(ctx context.Context, port int, a iperfArgs, d time.Duration) (iperfResult, error) {
	args := []string{"-c", "127.0.0.1", "-p", strconv.Itoa(port), "-J",
		"-t", strconv.Itoa(int(d.Seconds())), "-P", strconv.Itoa(a.streams)}
	if a.reverse {
		args = append(args, "-R")
	}
	for attempt := 0; ; attempt++ {
		out, cpu, err := run(ctx, d+30*time.Second, "iperf3", args...)
		if len(out) == 0 {
			return iperfResult{}, err
		}
		// iperf3 -J reports its own errors in the JSON, with exit status 1.
		r, err := parseIperf(out)
		if err != nil && strings.Contains(err.Error(), "server is busy") && attempt < 50 {
			// The server is still closing the previous test.
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return r, err
			}
			continue
		}
		r.cpu = map[string]time.Duration{roleLoad: cpu}
		return r, err
	}
}

// parseIperf reads what the receiver measured from iperf3 -J.
func parseIperf(out []byte) (iperfResult, error) {
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if r.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.Bytes == 0 {
		return iperfResult{}, fmt.Errorf("iperf3 received no bytes")
	}
	return iperfResult{bps: r.End.SumReceived.BitsPerSecond, bytes: r.End.SumReceived.Bytes}, nil
}
