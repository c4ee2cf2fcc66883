// Package registry holds the live client sessions of caddy-inlets and the
// routes they announce. One Registry lives in a package-level
// caddy.UsagePool, so it, and every session in it, outlives config reloads:
// each config that uses inlets takes a reference in Provision (Load) and
// drops it in Cleanup (Release).
package registry

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Registry is the set of live sessions and the routing tables built from
// their announcements. The data plane reads the tables without locking.
type Registry struct {
	started time.Time
	logger  atomic.Pointer[zap.Logger]
	nextID  atomic.Uint64

	// mu guards sessions and serialises rebuilding routes.
	mu       sync.Mutex
	sessions map[uint64]*Session
	closed   bool

	// routes is an immutable snapshot, replaced whenever sessions change.
	routes atomic.Pointer[routes]

	// openersMu guards openers: the TCP data planes installed by the TCP
	// apps that run, oldest first (see SetPortOpener).
	openersMu sync.Mutex
	openers   []PortOpener

	// watchers are told when the set of sessions changes.
	watchers sync.Map // *func()
}

// New returns an empty registry.
func New() *Registry {
	r := &Registry{
		started:  time.Now(),
		sessions: make(map[uint64]*Session),
	}
	r.logger.Store(zap.NewNop())
	r.routes.Store(buildRoutes(nil))
	return r
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
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Session) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Session returns the live session with the given ID, or nil.
func (r *Registry) Session(id uint64) *Session {
	return r.routes.Load().byID[id]
}

// Watch calls f after every change to the set of sessions, until the
// returned function is called.
func (r *Registry) Watch(f func()) (stop func()) {
	key := &f
	r.watchers.Store(key, f)
	return func() { r.watchers.Delete(key) }
}

// add registers s. It fails when the registry is shutting down.
func (r *Registry) add(s *Session) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errShuttingDown
	}
	r.sessions[s.ID] = s
	r.rebuildLocked()
	r.mu.Unlock()
	r.notify()
	return nil
}

// remove unregisters s; removing twice is harmless.
func (r *Registry) remove(s *Session) {
	r.mu.Lock()
	_, ok := r.sessions[s.ID]
	delete(r.sessions, s.ID)
	if ok {
		r.rebuildLocked()
	}
	r.mu.Unlock()
	if ok {
		r.notify()
	}
}

func (r *Registry) rebuildLocked() {
	list := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *Session) int { return cmp.Compare(a.ID, b.ID) })
	r.routes.Store(buildRoutes(list))
}

func (r *Registry) notify() {
	r.watchers.Range(func(_, f any) bool {
		f.(func())()
		return true
	})
}

// Destruct closes every session. The usage pool calls it when the last
// config using inlets is unloaded, e.g. when Caddy exits.
func (r *Registry) Destruct() error {
	r.mu.Lock()
	r.closed = true
	list := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		list = append(list, s)
	}
	r.mu.Unlock()
	for _, s := range list {
		s.Close()
	}
	return nil
}

// Provider is implemented by the inlets app, through which handlers and the
// TCP app reach the registry.
type Provider interface {
	Registry() *Registry
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
