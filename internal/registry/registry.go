// Package registry holds the live client sessions of caddy-inlets and the
// routes they announce. One Registry lives in a package-level
// caddy.UsagePool, so it, and every session in it, outlives config reloads:
// each config that uses inlets takes a reference in Provision (Load) and
// drops it in Cleanup (Release).
package registry

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Registry is the set of live sessions and the routes they announce.
// Adding or removing a session costs time in proportion to what it
// announces, whatever the number of sessions; the data plane reads the
// routes without locking.
type Registry struct {
	started time.Time
	logger  atomic.Pointer[zap.Logger]
	nextID  atomic.Uint64

	// mu serialises adding and removing sessions, and guards closed.
	mu     sync.Mutex
	closed bool
	// count is the number of sessions in byID.
	count atomic.Int64
	// byID maps a session's ID to the session.
	byID sync.Map // uint64 -> *Session
	// routes are those of the Unnamed tunnel's clients; tenants holds
	// each named tunnel's, so that a lookup only ever sees the clients of
	// the tunnel that owns a host or port.
	routes  routes
	tenants sync.Map // tunnel name -> *routes

	// tenancy is the tunnels of the config that started last; expiry
	// rechecks the sessions when the next token expires.
	tenancy atomic.Pointer[Tenancy]
	expiry  *time.Timer

	// watchers are told when a session is added or removed.
	watchers sync.Map // *func(*Session)

	// budget bounds what clients have sent and visitors not read yet,
	// across every session.
	budget *tunnel.Budget
	// shedLog bounds the log lines about streams the budget resets.
	shedLog struct {
		sync.Mutex
		last       time.Time
		suppressed int
	}
	// peers are the fleet's other servers the config advertises.
	peers atomic.Pointer[[]string]
	// rttTimer runs sampleRTT, guarded by mu.
	rttTimer *time.Timer
	// certs are the tunnels' on-demand certificate budgets.
	certs certBudgets
	// visitorRates are the tunnels' visitor rates, by source;
	// bandwidths their bandwidth caps' buckets.
	visitorRates visitorRates
	bandwidths   bandwidths
	// maxClients bounds the sessions connected at once, all together;
	// the config that started last sets it.
	maxClients atomic.Int64
}

// rttSampleInterval is how often the sessions' round-trip times are
// looked at: each new measurement (a session measures as it starts, and
// every tunnel.DefaultMeasureRTTInterval after) is observed once.
const rttSampleInterval = 5 * time.Second

// sampleRTT observes the sessions' round-trip times measured since it
// last ran, then runs again in rttSampleInterval. No goroutine waits
// meanwhile.
func (r *Registry) sampleRTT() {
	for _, s := range r.Sessions() {
		if rtt := s.RTT(); rtt > 0 && s.observedRTT.Swap(int64(rtt)) != int64(rtt) {
			metrics.SessionRTT(s.Hello.Mode, rtt)
		}
	}
	r.mu.Lock()
	if !r.closed {
		r.rttTimer.Reset(rttSampleInterval)
	}
	r.mu.Unlock()
}

// DefaultMaxUnread is the budget's limit unless a control plane sets it.
const DefaultMaxUnread = 256 << 20

// DefaultMaxClients is max_clients unless a config sets it.
const DefaultMaxClients = 10000

// New returns an empty registry.
func New() *Registry {
	r := &Registry{started: time.Now(), budget: tunnel.NewBudget(DefaultMaxUnread)}
	r.maxClients.Store(DefaultMaxClients)
	r.logger.Store(zap.NewNop())
	r.budget.OnShed = r.logShed
	r.rttTimer = time.AfterFunc(rttSampleInterval, r.sampleRTT)
	return r
}

// Budget is the budget of data clients have sent and visitors not read
// yet, shared by every session.
func (r *Registry) Budget() *tunnel.Budget { return r.budget }

// logShed logs a stream the budget reset, at most once a second.
func (r *Registry) logShed(_ *tunnel.Stream, idle time.Duration) {
	r.shedLog.Lock()
	defer r.shedLog.Unlock()
	if time.Since(r.shedLog.last) < time.Second {
		r.shedLog.suppressed++
		return
	}
	r.shedLog.last = time.Now()
	r.Logger().Warn("data that visitors do not read passed max_unread: cutting the visitors who read least",
		zap.Duration("reader_idle", idle),
		zap.Int64("max_unread", r.budget.Limit()), zap.Int("streams_cut_since_last_line", r.shedLog.suppressed))
	r.shedLog.suppressed = 0
}

// Started is when the registry was created: the server's start time as
// clients see it, unchanged by reloads.
func (r *Registry) Started() time.Time { return r.started }

// Logger is the logger of the config that last started.
func (r *Registry) Logger() *zap.Logger { return r.logger.Load() }

// SetLogger swaps the logger; each config's app does so when it starts.
func (r *Registry) SetLogger(l *zap.Logger) { r.logger.Store(l) }

// Sessions returns the live sessions, oldest first.
func (r *Registry) Sessions() []*Session {
	out := make([]*Session, 0, r.count.Load())
	r.byID.Range(func(_, v any) bool {
		out = append(out, v.(*Session))
		return true
	})
	slices.SortFunc(out, func(a, b *Session) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Len is the number of live sessions.
func (r *Registry) Len() int { return int(r.count.Load()) }

// Session returns the live session with the given ID, or nil.
func (r *Registry) Session(id uint64) *Session {
	v, ok := r.byID.Load(id)
	if !ok {
		return nil
	}
	return v.(*Session)
}

// Watch calls f with the session after every addition or removal, until
// the returned function is called.
func (r *Registry) Watch(f func(*Session)) (stop func()) {
	key := &f
	r.watchers.Store(key, f)
	return func() { r.watchers.Delete(key) }
}

var errShuttingDown = errors.New("the server is shutting down; the client will reconnect to its successor")

// Add registers s, unless the registry is shutting down, holds
// maxClients sessions already (0: no limit) or its tenancy does not
// admit s; Admit is Add and Follow.
func (r *Registry) Add(s *Session) error {
	maxClients := int(r.maxClients.Load())
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return tunnel.Reject(tunnel.RejectShuttingDown, "%s", errShuttingDown)
	}
	if maxClients > 0 && r.Len() >= maxClients {
		r.mu.Unlock()
		return tunnel.Reject(tunnel.RejectServerFull, "the server has %d clients, as many as it takes (its max_clients): try again later, or ask its operator to raise the limit", maxClients)
	}
	if t := r.Tenancy(); t != nil {
		// The token was checked when the request came in; the config
		// may have changed during the handshake.
		if err := t.admits(s, time.Now()); err != nil {
			r.mu.Unlock()
			return err
		}
	}
	rs := r.tenantForWrite(s.Tunnel)
	if sc := r.Tenancy().Scope(s.Tunnel); sc != nil && sc.MaxClients > 0 && rs.clients.Load() >= int64(sc.MaxClients) {
		r.mu.Unlock()
		return tunnel.Reject(tunnel.RejectServerFull, "tunnel %s has %d clients connected, as many as it takes (its max_clients): disconnect one, or ask the server's operator to raise the limit", s.Tunnel, sc.MaxClients)
	}
	r.byID.Store(s.ID, s)
	r.count.Add(1)
	rs.clients.Add(1)
	rs.add(s)
	r.mu.Unlock()
	metrics.ClientConnected(s.Hello.Mode)
	r.notify(s)
	if p := r.peers.Load(); p != nil && len(*p) > 0 {
		// Queued until the accept has gone.
		s.SendPeers(*p)
	}
	return nil
}

// Retire takes s out of routing: no new visitor goes to it, and a host
// or port only it served is unserved (a port closes). It stays
// registered, counted against max_clients and its tunnel's limits, shown
// in status, and held to its tunnel's tokens at every reload, until its
// session ends: the streams open on it go on.
func (r *Registry) Retire(s *Session) {
	r.mu.Lock()
	_, ok := r.byID.Load(s.ID)
	retire := ok && s.retired.CompareAndSwap(false, true)
	if retire {
		r.tenant(s.Tunnel).remove(s)
	}
	r.mu.Unlock()
	if retire {
		r.notify(s)
	}
}

// Retired reports whether s's client has retired it (see Retire).
func (s *Session) Retired() bool { return s.retired.Load() }

// Remove unregisters s; removing twice is harmless.
func (r *Registry) Remove(s *Session) {
	r.mu.Lock()
	_, ok := r.byID.LoadAndDelete(s.ID)
	if ok {
		r.count.Add(-1)
		rs := r.tenant(s.Tunnel)
		rs.clients.Add(-1)
		if !s.retired.Load() {
			rs.remove(s)
		}
	}
	r.mu.Unlock()
	if ok {
		metrics.ClientDisconnected(s.Hello.Mode)
		r.notify(s)
	}
}

func (r *Registry) notify(s *Session) {
	r.watchers.Range(func(_, f any) bool {
		f.(func(*Session))(s)
		return true
	})
}

// Destruct closes every session. The usage pool calls it when the last
// config using inlets is unloaded, e.g. when Caddy exits.
func (r *Registry) Destruct() error {
	r.mu.Lock()
	r.closed = true
	if r.expiry != nil {
		r.expiry.Stop()
	}
	r.rttTimer.Stop()
	r.mu.Unlock()
	for _, s := range r.Sessions() {
		s.Close()
	}
	return nil
}

// pool holds the one registry of the process while a config uses it.
var pool = caddy.NewUsagePool()

const poolKey = "registry"

// Load returns the registry, creating it if no config holds it yet, and
// takes a reference that Release drops.
func Load() *Registry {
	v, _, _ := pool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return New(), nil
	})
	return v.(*Registry)
}

// Release drops a reference taken by Load.
func Release() {
	_, _ = pool.Delete(poolKey)
}

// Current returns the registry if some config holds it, or nil. It takes no
// reference: the admin API reads it without owning it.
func Current() *Registry {
	var r *Registry
	pool.Range(func(_, v any) bool {
		r = v.(*Registry)
		return false
	})
	return r
}

var _ caddy.Destructor = (*Registry)(nil)

// SetPeers makes peers the fleet's other servers that clients are told
// of; when they change, every connected client is told the new list.
func (r *Registry) SetPeers(peers []string) {
	peers = slices.Clone(peers)
	old := r.peers.Swap(&peers)
	if old == nil && len(peers) == 0 || old != nil && slices.Equal(*old, peers) {
		return
	}
	for _, s := range r.Sessions() {
		s.SendPeers(peers)
	}
}

// SetMaxClients sets the most clients connected at once, all control
// planes and tunnels together (the inlets app's max_clients), and
// returns the one it replaces.
func (r *Registry) SetMaxClients(n int64) (old int64) { return r.maxClients.Swap(n) }
