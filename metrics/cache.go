package metrics

import "sync"

// newSeriesCache returns a lookup of the series of a key that creates them
// with newSeries the first time and keeps them, so that recording on a hot
// path neither hashes label values nor allocates.
func newSeriesCache[K comparable, S any](newSeries func(K) S) func(K) S {
	var (
		mu sync.RWMutex
		m  = make(map[K]S)
	)
	return func(k K) S {
		mu.RLock()
		s, ok := m[k]
		mu.RUnlock()
		if ok {
			return s
		}
		mu.Lock()
		defer mu.Unlock()
		if s, ok = m[k]; !ok {
			s = newSeries(k)
			m[k] = s
		}
		return s
	}
}
