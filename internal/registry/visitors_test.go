package registry

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/config"
)

func TestAVisitorSourceIsAnIPv4AddressOrAnIPv6Slash64(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
	} {
		a, b := VisitorSource(netip.MustParseAddr(tt.a)), VisitorSource(netip.MustParseAddr(tt.b))
		if (a == b) != tt.same {
			t.Errorf("VisitorSource(%s) = %s, VisitorSource(%s) = %s: same source %v, want %v", tt.a, a, tt.b, b, a == b, tt.same)
		}
	}
}

// Deny wins over allow; an allow list refuses what it does not hold; an
// IPv4 visitor of a dual-stack listener is matched as IPv4.
func TestVisitorAddressLists(t *testing.T) {
	p, err := compileVisitors(&config.Visitors{Allow: []string{"127.0.0.0/8", "2001:db8::/32", "192.0.2.7"}, Deny: []string{"127.0.0.9"}})
	if err != nil {
		t.Fatal(err)
	}
	zoned, err := compileVisitors(&config.Visitors{Deny: []string{"fe80::/10"}})
	if err != nil {
		t.Fatal(err)
	}
	if zoned.AllowsAddress(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("a zoned link-local address passed a deny of fe80::/10")
	}
	for addr, want := range map[string]bool{
		"127.0.0.1":        true,
		"::ffff:127.0.0.1": true,
		"127.0.0.9":        false,
		"192.0.2.7":        true,
		"192.0.2.8":        false,
		"2001:db8::1":      true,
		"2001:db9::1":      false,
		"10.0.0.1":         false,
	} {
		if got := p.AllowsAddress(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s allowed %v, want %v", addr, got, want)
		}
	}
	for _, bad := range []string{"127.0.0.1/33", "example.com", "::ffff:1.2.3.4/90", "fe80::1%eth0", ""} {
		if _, err := compileVisitors(&config.Visitors{Allow: []string{bad}}); err == nil || !strings.Contains(err.Error(), "allow") {
			t.Errorf("allow %q: %v", bad, err)
		}
	}
	if p, err := compileVisitors(&config.Visitors{}); p != nil || err != nil {
		t.Errorf("an empty policy compiles to %v, %v; want nothing", p, err)
	}
}

// A source gets its burst, then a request per 1/rate; another source has
// its own; the sources remembered stay under MaxVisitorSources.
func TestVisitorRatesArePerSourceAndBounded(t *testing.T) {
	r := New()
	p, err := compileVisitors(&config.Visitors{RequestsPerSecond: 1, RequestBurst: 3})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if reason, _ := r.VisitorAllowed("t", p, VisitRequest, a, now); reason != "" {
			t.Fatalf("request %d of the burst refused: %s", i+1, reason)
		}
	}
	reason, wait := r.VisitorAllowed("t", p, VisitRequest, a, now)
	if reason != RefusedRate || wait <= 0 || wait > time.Second {
		t.Fatalf("past the burst: %q, wait %s; want rate, at most 1s", reason, wait)
	}
	if reason, _ := r.VisitorAllowed("t", p, VisitRequest, b, now); reason != "" {
		t.Fatalf("another source refused: %s", reason)
	}
	if reason, _ := r.VisitorAllowed("t", p, VisitRequest, a, now.Add(time.Second)); reason != "" {
		t.Fatalf("a second later: %s", reason)
	}
	// Connections are counted apart from requests.
	if reason, _ := r.VisitorAllowed("t", p, VisitConnection, a, now); reason != "" {
		t.Fatalf("a connection with no connection rate: %s", reason)
	}
	for i := range 3 * MaxVisitorSources {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r.VisitorAllowed("t", p, VisitRequest, addr, now)
	}
	got, _ := r.visitorRates.m.Load(visitorRateKey{"t", VisitRequest})
	if n := len(got.(*sourceRates).m); n > MaxVisitorSources {
		t.Fatalf("%d sources remembered, more than %d", n, MaxVisitorSources)
	}
}
