package registry

import (
	"net/netip"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/time/rate"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/metrics"
)

// VisitorPolicy is a tunnel's visitors option compiled: who may visit
// its hosts, ports and TLS names, and how often. The rates' state is the
// registry's (Registry.VisitorAllowed), so that a reload that keeps a
// rate keeps what each source has used of it.
type VisitorPolicy struct {
	allow, deny []netip.Prefix
	requests    rateSpec
	connections rateSpec
	bandwidth   bandwidthSpec
	// auth is the tunnel's HTTP authentication, which its app builds
	// from Caddy's modules (SetAuth); nil: none.
	auth caddyhttp.MiddlewareHandler
}

// rateSpec is a rate a second with its burst; zero: no limit.
type rateSpec struct {
	perSecond float64
	burst     int
}

// Visit is what a visitor does that a rate counts.
type Visit int

const (
	// VisitRequest is an HTTP request.
	VisitRequest Visit = iota
	// VisitConnection is a new TCP or TLS connection, or a new UDP flow.
	VisitConnection
)

// Reasons a visitor is refused, as the metrics and the logs name them.
const (
	RefusedAddress = "address"
	RefusedRate    = "rate"
	// RefusedAuth is an HTTP request the tunnel's basic_auth or
	// forward_auth answered itself.
	RefusedAuth = "auth"
)

// compileVisitors compiles v; nil when it asks nothing.
func compileVisitors(v *config.Visitors) (*VisitorPolicy, error) {
	if v == nil {
		return nil, nil
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	p := &VisitorPolicy{
		requests:    rateSpec{v.RequestsPerSecond, config.Burst(v.RequestsPerSecond, v.RequestBurst)},
		connections: rateSpec{v.ConnectionsPerSecond, config.Burst(v.ConnectionsPerSecond, v.ConnectionBurst)},
		bandwidth:   bandwidthSpec{down: v.BandwidthDown, up: v.BandwidthUp},
	}
	for _, s := range v.Allow {
		pfx, _ := config.ParseVisitorPrefix(s) // Validate parsed it
		p.allow = append(p.allow, pfx)
	}
	for _, s := range v.Deny {
		pfx, _ := config.ParseVisitorPrefix(s)
		p.deny = append(p.deny, pfx)
	}
	if len(p.allow)+len(p.deny) == 0 && p.requests.perSecond == 0 && p.connections.perSecond == 0 && p.bandwidth == (bandwidthSpec{}) && !v.HasAuth() {
		return nil, nil
	}
	return p, nil
}

// AllowsAddress reports whether addr passes the allow and deny lists: in
// no deny prefix, and in an allow prefix when there are any.
func (p *VisitorPolicy) AllowsAddress(addr netip.Addr) bool {
	if p == nil {
		return true
	}
	// A zone (fe80::1%eth0) would keep the address out of every prefix.
	addr = addr.WithZone("").Unmap()
	for _, d := range p.deny {
		if d.Contains(addr) {
			return false
		}
	}
	if len(p.allow) == 0 {
		return true
	}
	for _, a := range p.allow {
		if a.Contains(addr) {
			return true
		}
	}
	return false
}

// VisitorSource is what a visitor rate counts by: an IPv4 address, or an
// IPv6 /64 (one host often has a whole /64, so counting its addresses
// apart would let it multiply its rate).
func VisitorSource(a netip.Addr) netip.Prefix {
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// VisitorAllowed decides whether a visit of tunnel's, by policy p, from
// addr may go on: "" if so, else the reason it is refused, with how long
// to wait for a rate (the Retry-After of an HTTP 429).
func (r *Registry) VisitorAllowed(tunnel string, p *VisitorPolicy, visit Visit, addr netip.Addr, now time.Time) (reason string, wait time.Duration) {
	if p == nil {
		return "", 0
	}
	if !p.AllowsAddress(addr) {
		return RefusedAddress, 0
	}
	spec := p.requests
	if visit == VisitConnection {
		spec = p.connections
	}
	if spec.perSecond == 0 {
		return "", 0
	}
	if wait := r.visitorRates.take(visitorRateKey{tunnel, visit}, spec, VisitorSource(addr), now); wait > 0 {
		return RefusedRate, wait
	}
	return "", 0
}

// MaxVisitorSources bounds the sources one tunnel's rate remembers, each
// kind of visit apart. Past it, the sources idle longest are forgotten:
// such a source comes back with a full burst, no more.
const MaxVisitorSources = 16384

// visitorRates is the state of every tunnel's visitor rates.
type visitorRates struct {
	m sync.Map // visitorRateKey -> *sourceRates
}

type visitorRateKey struct {
	tunnel string
	visit  Visit
}

// sourceRates is one tunnel's rate of one kind of visit, by source.
type sourceRates struct {
	spec rateSpec
	mu   sync.Mutex
	m    map[netip.Prefix]*sourceRate
}

type sourceRate struct {
	lim  *rate.Limiter
	seen time.Time
}

// take takes one visit from source's bucket; it returns 0, or how long
// until the bucket has one. A rate whose spec changed starts afresh.
func (v *visitorRates) take(key visitorRateKey, spec rateSpec, source netip.Prefix, now time.Time) time.Duration {
	var sr *sourceRates
	if got, ok := v.m.Load(key); ok && got.(*sourceRates).spec == spec {
		sr = got.(*sourceRates)
	} else {
		fresh := &sourceRates{spec: spec, m: make(map[netip.Prefix]*sourceRate)}
		if ok {
			v.m.CompareAndSwap(key, got, fresh)
		} else {
			v.m.LoadOrStore(key, fresh)
		}
		got, _ = v.m.Load(key)
		sr = got.(*sourceRates)
	}
	sr.mu.Lock()
	defer sr.mu.Unlock()
	s := sr.m[source]
	if s == nil {
		if len(sr.m) >= MaxVisitorSources {
			sr.forget(now)
		}
		s = &sourceRate{lim: rate.NewLimiter(rate.Limit(spec.perSecond), spec.burst)}
		sr.m[source] = s
	}
	s.seen = now
	res := s.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// forget drops the sources whose bucket has refilled (they are as good as
// new); if that frees less than a quarter of the table, it drops others,
// in the map's order, which is random, until it has. The caller holds mu.
func (sr *sourceRates) forget(now time.Time) {
	full := time.Duration(float64(sr.spec.burst) / sr.spec.perSecond * float64(time.Second))
	for src, s := range sr.m {
		if now.Sub(s.seen) >= full {
			delete(sr.m, src)
		}
	}
	for src := range sr.m {
		if len(sr.m) <= MaxVisitorSources*3/4 {
			break
		}
		delete(sr.m, src)
	}
}

// forgetTunnel drops the rates of a tunnel that no longer exists.
func (v *visitorRates) forgetTunnel(name string) {
	v.m.Range(func(k, _ any) bool {
		if k.(visitorRateKey).tunnel == name {
			v.m.Delete(k)
		}
		return true
	})
}

// VisitorPolicy is the visitors policy of tunnel owner, as the tunnels
// of the moment have it; nil when it asks nothing (then the visitor's
// address need not even be looked at).
func (r *Registry) VisitorPolicy(owner string) *VisitorPolicy {
	if sc := r.Tenancy().Scope(owner); sc != nil {
		return sc.Visitors
	}
	return nil
}

// RefuseVisitor holds a visit to p, tunnel owner's visitors policy: ""
// when the visit may go on, else the reason it is refused (counted per
// tunnel, transport and reason), with how long to wait for a rate.
func (r *Registry) RefuseVisitor(owner string, p *VisitorPolicy, visit Visit, transport string, addr netip.Addr) (reason string, wait time.Duration) {
	reason, wait = r.VisitorAllowed(owner, p, visit, addr, time.Now())
	if reason != "" {
		metrics.VisitorRefused(owner, transport, reason)
	}
	return reason, wait
}

// bandwidthOf is tunnel's buckets, nil when it has no bandwidth cap.
func (r *Registry) bandwidthOf(tunnel string) *bandwidth {
	p := r.VisitorPolicy(tunnel)
	if p == nil || p.bandwidth == (bandwidthSpec{}) {
		return nil
	}
	return r.bandwidths.of(tunnel, p.bandwidth)
}

// Auth is the tunnel's HTTP authentication, nil when it has none.
func (p *VisitorPolicy) Auth() caddyhttp.MiddlewareHandler {
	if p == nil {
		return nil
	}
	return p.auth
}

// SetAuth gives tunnel name its HTTP authentication: the app builds it
// from Caddy's modules as it provisions, before the tenancy starts.
func (t *Tenancy) SetAuth(name string, auth caddyhttp.MiddlewareHandler) {
	if sc := t.Scope(name); sc != nil && sc.Visitors != nil {
		sc.Visitors.auth = auth
	}
}
