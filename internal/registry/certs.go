package registry

import (
	"sync"
	"time"
)

// On-demand certificates are shared fairly: each tunnel (and the clients
// of a handler's own token, as one) may have the server ask its CA for at
// most so many new certificates an hour, and no more than
// OnDemandPerMinute in any minute. A tenant that announces many names, or
// whose visitors ask for many names under its wildcards, then spends its
// own budget, not the server's ACME account: Let's Encrypt allows an
// account 300 new orders in 3 hours, and certmagic orders at most 10 in
// 10 seconds for all tenants together, so one tenant's burst would
// otherwise hold up another's first certificate.
const (
	// DefaultOnDemandPerHour is a tunnel's budget unless its
	// on_demand_per_hour says otherwise.
	DefaultOnDemandPerHour = 20
	// OnDemandPerMinute bounds a tunnel's orders in any minute: a
	// burst holds certmagic's shared limiter for a few seconds at most.
	OnDemandPerMinute = 5
)

// certBudgets holds, per tunnel, when the orders of the last hour were
// allowed: at most the tunnel's budget each, so bounded by the tunnels
// the config has.
type certBudgets struct {
	mu sync.Mutex
	m  map[string][]time.Time // oldest first
}

// TakeCertificateOrder reports whether tunnel may have the server order
// one more certificate at now, within perHour (0: the default), and
// records it if so; if not, wait is how long until it may.
func (r *Registry) TakeCertificateOrder(tunnel string, perHour int, now time.Time) (ok bool, wait time.Duration) {
	if perHour <= 0 {
		perHour = DefaultOnDemandPerHour
	}
	perMinute := min(perHour, OnDemandPerMinute)
	b := &r.certs
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string][]time.Time{}
	}
	times := b.m[tunnel]
	i := 0
	for i < len(times) && now.Sub(times[i]) >= time.Hour {
		i++
	}
	times = times[i:]
	switch {
	case len(times) >= perHour:
		b.m[tunnel] = times
		return false, times[len(times)-perHour].Add(time.Hour).Sub(now)
	case len(times) >= perMinute && now.Sub(times[len(times)-perMinute]) < time.Minute:
		b.m[tunnel] = times
		return false, times[len(times)-perMinute].Add(time.Minute).Sub(now)
	}
	b.m[tunnel] = append(times, now)
	return true, 0
}

// forgetCertificateOrders drops the budgets of the tunnels t does not
// have (a deleted tunnel's), but the Unnamed one's.
func (r *Registry) forgetCertificateOrders(t *Tenancy) (forgotten []string) {
	b := &r.certs
	b.mu.Lock()
	defer b.mu.Unlock()
	for name := range b.m {
		if name != Unnamed && t.Scope(name) == nil {
			delete(b.m, name)
			forgotten = append(forgotten, name)
		}
	}
	return forgotten
}
