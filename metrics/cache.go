package metrics

import "sync"

// seriesSet holds the series of the data-plane metrics per label value L
// (a host pattern, a port), for the label values that some client serves
// now. Recording on a hot path then neither hashes label values nor
// allocates; and when the last client serving a value goes, its series
// are deleted from the metrics, so that clients announcing ever new hosts
// or ports cannot grow /metrics without bound.
type seriesSet[L comparable, K comparable, S any] struct {
	mu     sync.RWMutex
	served map[L]map[K]S
	// always lists label values served whether or not a client serves
	// them (the host label of requests no client served).
	always L
	make   func(K) S
	drop   func(K)
}

func newSeriesSet[L comparable, K comparable, S any](always L, make func(K) S, drop func(K)) *seriesSet[L, K, S] {
	return &seriesSet[L, K, S]{served: map[L]map[K]S{always: {}}, always: always, make: make, drop: drop}
}

// get returns the series of k, whose label value is l, creating them the
// first time; ok is false, and nothing is recorded, when no client
// serves l (a request that ended after its client left).
func (c *seriesSet[L, K, S]) get(l L, k K) (s S, ok bool) {
	c.mu.RLock()
	s, ok = c.served[l][k]
	c.mu.RUnlock()
	if ok {
		return s, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, served := c.served[l]
	if !served {
		return s, false
	}
	if s, ok = m[k]; !ok {
		s = c.make(k)
		m[k] = s
	}
	return s, true
}

// serve starts recording series of l.
func (c *seriesSet[L, K, S]) serve(l L) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.served[l]; !ok {
		c.served[l] = map[K]S{}
	}
}

// unserve deletes the series of l and stops recording them.
func (c *seriesSet[L, K, S]) unserve(l L) {
	if l == c.always {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.served[l] {
		c.drop(k)
	}
	delete(c.served, l)
}
