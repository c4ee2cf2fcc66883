package registry

import (
	"testing"

	"golang.org/x/time/rate"
)

// A tunnel's buckets change in place with its caps, so that streams
// already open follow: a lower cap, and no cap at all.
func TestBandwidthCapsChangeInPlace(t *testing.T) {
	var b bandwidths
	bw := b.of("t", bandwidthSpec{down: 100 << 20})
	if bw.down.Limit() != rate.Limit(100<<20) || bw.up.Limit() != rate.Inf {
		t.Fatalf("down %v, up %v", bw.down.Limit(), bw.up.Limit())
	}
	if again := b.of("t", bandwidthSpec{down: 1 << 20, up: 2 << 20}); again != bw {
		t.Fatal("a new cap gave new buckets: streams open would keep the old one")
	}
	if bw.down.Limit() != rate.Limit(1<<20) || bw.up.Limit() != rate.Limit(2<<20) || bw.down.Burst() != burstOf(1<<20) {
		t.Fatalf("after lowering: down %v (burst %d), up %v", bw.down.Limit(), bw.down.Burst(), bw.up.Limit())
	}
	ten, err := CompileTunnels(map[string]*Tunnel{"t": {Tokens: []Token{{Value: "x"}}, Hosts: []string{"t.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	b.apply(ten) // the cap removed by a reload
	if bw.down.Limit() != rate.Inf || bw.up.Limit() != rate.Inf {
		t.Fatalf("after the cap was removed: down %v, up %v", bw.down.Limit(), bw.up.Limit())
	}
}
