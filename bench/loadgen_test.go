package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const wrkOutput = `Running 10s test @ http://127.0.0.1:29001/small
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   227.16us  638.08us   8.00ms   92.72%
    Req/Sec    82.37k     4.08k   89.62k    72.73%
  Latency Distribution
     50%   49.00us
     75%   73.00us
     90%  339.00us
     99%    3.43ms
  899520 requests in 10.10s, 98.70MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 7
Requests/sec:  81784.43
Transfer/sec:      8.97MB
`

func TestParseWrkReadsRateLatencyAndErrors(t *testing.T) {
	l, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := httpLoad{rps: 81784.43, p50: 49e-6, p99: 3.43e-3, requests: 899520, non2xx: 7, sockErrs: 10}
	if !near(l.rps, want.rps) || !near(l.p50, want.p50) || !near(l.p99, want.p99) ||
		l.requests != want.requests || l.non2xx != want.non2xx || l.sockErrs != want.sockErrs {
		t.Errorf("got %+v, want %+v", l, want)
	}
	if l.errors() != 17 {
		t.Errorf("errors %v, want 17", l.errors())
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("parsed wrk's failure as a result")
	}
	noLatency := strings.ReplaceAll(wrkOutput, "99%", "98%")
	if _, err := parseWrk(noLatency); err == nil {
		t.Error("parsed an output without p99")
	}
}

const heyOutput = `
Summary:
  Total:	1.0006 secs
  Requests/sec:	22101.6824

Latency distribution:
  10% in 0.0000 secs
  50% in 0.0001 secs
  99% in 0.0023 secs

Status code distribution:
  [200]	22116 responses
  [502]	3 responses

Error distribution:
  [5]	Get "http://127.0.0.1:39009/small": dial tcp 127.0.0.1:39009: connect: connection refused
`

func TestParseHeyReadsRateLatencyStatusesAndErrors(t *testing.T) {
	l, err := parseHey(heyOutput)
	if err != nil {
		t.Fatal(err)
	}
	if !near(l.rps, 22101.6824) || !near(l.p50, 1e-4) || !near(l.p99, 2.3e-3) || l.requests != 22119 || l.non2xx != 3 || l.sockErrs != 5 {
		t.Errorf("got %+v", l)
	}
}

func TestParseIperfReadsTheReceiversThroughputOrItsError(t *testing.T) {
	r, err := parseIperf([]byte(`{"start":{},"end":{"sum_sent":{"bytes":10,"bits_per_second":9e9},"sum_received":{"bytes":10,"bits_per_second":8.5e9}}}`))
	if err != nil || r.bps != 8.5e9 || r.bytes != 10 {
		t.Errorf("got %+v, %v; want 8.5e9 bit/s, 10 bytes", r, err)
	}
	if _, err := parseIperf([]byte(`{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`)); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("iperf3's error: got %v", err)
	}
	if _, err := parseIperf([]byte(`{"end":{"sum_received":{"bytes":0}}}`)); err == nil {
		t.Error("no bytes received passed")
	}
}

func TestCaddyFiguresAreReadFromMetricsAndProfiles(t *testing.T) {
	metrics := "# HELP go_memstats_heap_inuse_bytes x\ngo_memstats_heap_inuse_bytes 7.1303168e+06\n" +
		"tcp_dataplane_connections_gauge{port=\"8000\"} 10000\n"
	if v, err := metricValue(metrics, "go_memstats_heap_inuse_bytes"); err != nil || v != 7130316.8 {
		t.Errorf("heap: %v, %v", v, err)
	}
	if v, err := metricValue(metrics, `tcp_dataplane_connections_gauge{port="8000"}`); err != nil || v != 10000 {
		t.Errorf("gauge: %v, %v", v, err)
	}
	if _, err := metricValue(metrics, "go_memstats_heap"); err == nil {
		t.Error("a prefix of a name matched")
	}
	if n, err := goroutineTotal("goroutine profile: total 4011\n12 @ 0x1\n"); err != nil || n != 4011 {
		t.Errorf("goroutines: %v, %v", n, err)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
}

func TestPatternRoundTripsAndCatchesAWrongByte(t *testing.T) {
	const size = 3<<20 + 12345
	var buf bytes.Buffer
	if err := writePattern(&buf, size); err != nil {
		t.Fatal(err)
	}
	body := buf.Bytes()
	read, _ := io.ReadAll(&patternReader{left: size})
	if !bytes.Equal(read, body) {
		t.Fatal("patternReader and writePattern disagree")
	}
	if n, err := checkPattern(bytes.NewReader(body)); err != nil || n != size {
		t.Fatalf("checkPattern: %d, %v", n, err)
	}
	body[2<<20+7] ^= 1
	if _, err := checkPattern(bytes.NewReader(body)); err == nil || !strings.Contains(err.Error(), "byte 2097159") {
		t.Errorf("a flipped byte: got %v", err)
	}
}

func TestReportReplacesOnlyTheMarkedPart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := writeReport(path, "first\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	edited := string(b) + "\n## What each change bought\n\nhand-written\n"
	os.WriteFile(path, []byte(edited), 0o644)
	if err := writeReport(path, "second\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	if strings.Contains(got, "first") || !strings.Contains(got, "second") || !strings.Contains(got, "hand-written") {
		t.Errorf("after the second write:\n%s", got)
	}
	os.WriteFile(path, []byte("no markers\n"), 0o644)
	if err := writeReport(path, "third\n"); err == nil {
		t.Error("overwrote a file without markers")
	}
}

func near(a, b float64) bool { return a-b < 1e-9*b+1e-12 && b-a < 1e-9*b+1e-12 }
