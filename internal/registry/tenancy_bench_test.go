package registry

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchSizes are the numbers of tunnels the benchmarks compare: what a
// lookup costs must not grow with them.
var benchSizes = []int{1, 1000, 10000}

// benchTunnels is n tunnels as an operator would configure them: tN with
// the digest of token "token-N" and the host tN.example.com.
func benchTunnels(n int) map[string]*Tunnel {
	tunnels := make(map[string]*Tunnel, n)
	for i := range n {
		tunnels[fmt.Sprintf("t%d", i)] = &Tunnel{
			Tokens: []Token{{SHA256: digestHex(fmt.Sprintf("token-%d", i))}},
			Hosts:  []string{fmt.Sprintf("t%d.example.com", i)},
		}
	}
	return tunnels
}

func benchTenancy(b *testing.B, n int) *Tenancy {
	b.Helper()
	t, err := CompileTunnels(benchTunnels(n))
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func BenchmarkAuthenticate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("tunnels=%d", n), func(b *testing.B) {
			t := benchTenancy(b, n)
			digest := sha256.Sum256(fmt.Appendf(nil, "token-%d", n/2))
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := t.Authenticate(digest, now); !ok {
					b.Fatal("the token of a configured tunnel was refused")
				}
			}
		})
	}
}

// BenchmarkOwner looks up a visitor's host: one a tunnel owns, and one
// none does, which also walks the wildcards of its parents.
func BenchmarkOwner(b *testing.B) {
	for _, n := range benchSizes {
		t := benchTenancy(b, n)
		for _, c := range []struct{ name, host, want string }{
			{"owned", fmt.Sprintf("t%d.example.com", n/2), fmt.Sprintf("t%d", n/2)},
			{"unowned", "www.shop.example.org", Unnamed},
		} {
			b.Run(fmt.Sprintf("tunnels=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if got := t.Owner(c.host); got != c.want {
						b.Fatalf("owner of %s = %q, want %q", c.host, got, c.want)
					}
				}
			})
		}
	}
}

// BenchmarkCompileTunnels compiles 10,000 tunnels, as every config load
// does. B/tunnel is what one compiled tunnel keeps on the heap (measured
// once, after a collection); alloc-B/tunnel what compiling it allocates.
func BenchmarkCompileTunnels(b *testing.B) {
	const n = 10000
	tunnels := benchTunnels(n)
	kept := retained(func() any { t, _ := CompileTunnels(tunnels); return t })
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CompileTunnels(tunnels); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// After the loop: b.Loop's first call deletes the metrics reported
	// before it.
	b.ReportMetric(float64(kept)/n, "B/tunnel")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/n, "alloc-B/tunnel")
}

// retained is the heap that what build returns keeps live.
func retained(build func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return after.HeapAlloc - before.HeapAlloc
}
