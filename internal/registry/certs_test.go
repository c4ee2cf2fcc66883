package registry

import (
	"testing"
	"time"
)

func TestACertificateBudgetAllowsFiveAMinuteAndItsNumberAnHour(t *testing.T) {
	r := New()
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	take := func(tunnel string, perHour int, at time.Duration) (bool, time.Duration) {
		return r.TakeCertificateOrder(tunnel, perHour, t0.Add(at))
	}
	// A burst: 5 at once, then the sixth waits for the minute's end.
	for i := range OnDemandPerMinute {
		if ok, _ := take("flood", 12, time.Duration(i)*time.Millisecond); !ok {
			t.Fatalf("order %d of a burst refused", i+1)
		}
	}
	if ok, wait := take("flood", 12, time.Second); ok || wait != time.Minute-time.Second {
		t.Fatalf("the sixth order of a minute: allowed %v, wait %s; want refused, 59s", ok, wait)
	}
	// Another tunnel's budget is its own.
	if ok, _ := take("other", 0, time.Second); !ok {
		t.Fatal("another tunnel's first order refused")
	}
	// Minute after minute, up to 12 in the hour, then none until the
	// first of them is an hour old.
	allowed := OnDemandPerMinute
	for m := 1; m < 60; m++ {
		for range OnDemandPerMinute {
			if ok, _ := take("flood", 12, time.Duration(m)*time.Minute+time.Second); ok {
				allowed++
			}
		}
	}
	if allowed != 12 {
		t.Fatalf("%d orders allowed in an hour, want 12", allowed)
	}
	if ok, _ := take("flood", 12, time.Hour+time.Second); !ok {
		t.Fatal("an order an hour after the first refused")
	}
	// A deleted tunnel's budget goes with it.
	ten, err := CompileTunnels(map[string]*Tunnel{"other": {Tokens: []Token{{Value: "o"}}, Hosts: []string{"o.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	r.SetTenancy(ten)
	if _, ok := r.certs.m["flood"]; ok {
		t.Error("a deleted tunnel's budget is kept")
	}
	if _, ok := r.certs.m["other"]; !ok {
		t.Error("a kept tunnel's budget is gone")
	}
}
