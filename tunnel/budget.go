package tunnel

import (
	"sync"
	"sync/atomic"
	"time"
)

// Budget bounds the bytes that clients have sent the server on data
// streams and that no visitor has read yet, across every session that
// shares it: what a visitor who does not read pins in the server's memory.
// Each stream holds at most its window; while the sum stays under the
// limit, a slow reader slows only its own stream. Once the sum passes the
// limit, the streams holding unread data whose reader has waited longest
// are reset, one after the other, until it is back under 90% of the
// limit: the visitors who stopped reading are cut, not the others.
type Budget struct {
	limit atomic.Int64
	used  atomic.Int64

	// mu guards streams and sweeping.
	mu       sync.Mutex
	streams  map[*Stream]struct{}
	sweeping bool

	// OnShed, if set, is told of each stream the budget resets.
	OnShed func(st *Stream, unread int64, idle time.Duration)
}

// NewBudget returns a budget of limit bytes; 0 or less: no limit.
func NewBudget(limit int64) *Budget {
	b := &Budget{streams: make(map[*Stream]struct{})}
	b.limit.Store(limit)
	return b
}

// SetLimit changes the limit, as a reloaded config may.
func (b *Budget) SetLimit(limit int64) { b.limit.Store(limit) }

// Limit is the budget's limit.
func (b *Budget) Limit() int64 { return b.limit.Load() }

// Used is the bytes counted now.
func (b *Budget) Used() int64 { return b.used.Load() }

// add starts counting what st holds.
func (b *Budget) add(st *Stream) {
	st.budgetMu.Lock()
	st.counted = true
	st.budgetMu.Unlock()
	b.mu.Lock()
	b.streams[st] = struct{}{}
	b.mu.Unlock()
}

// remove takes st out of the budget with what it still counts.
func (b *Budget) remove(st *Stream) {
	st.budgetMu.Lock()
	if st.counted {
		st.counted = false
		b.used.Add(-st.unread)
		st.unread = 0
	}
	st.budgetMu.Unlock()
	b.mu.Lock()
	delete(b.streams, st)
	b.mu.Unlock()
}

// received counts n bytes arrived for st. Every update of a stream's
// count is made under its lock, so that used is always the sum of what
// the streams counted now hold, however the reader, the session's
// reader and a reset race.
func (b *Budget) received(st *Stream, n int64) {
	st.budgetMu.Lock()
	var used int64
	if st.counted {
		st.unread += n
		used = b.used.Add(n)
	}
	st.budgetMu.Unlock()
	if limit := b.limit.Load(); limit > 0 && used > limit {
		b.sweep()
	}
}

// consumed counts n bytes of st read.
func (b *Budget) consumed(st *Stream, n int64) {
	st.budgetMu.Lock()
	if st.counted {
		st.unread -= n
		b.used.Add(-n)
	}
	st.budgetMu.Unlock()
}

// unreadOf is what st holds unread now.
func (st *Stream) unreadOf() int64 {
	st.budgetMu.Lock()
	defer st.budgetMu.Unlock()
	return st.unread
}

// sweep resets streams, most unread first, until the budget is back
// under 90% of its limit. One sweep runs at a time, on a goroutine of its
// own: it is started from the session's reader.
func (b *Budget) sweep() {
	b.mu.Lock()
	if b.sweeping {
		b.mu.Unlock()
		return
	}
	b.sweeping = true
	b.mu.Unlock()
	go func() {
		for {
			b.mu.Lock()
			if b.used.Load() <= b.limit.Load()*9/10 || len(b.streams) == 0 {
				b.sweeping = false
				b.mu.Unlock()
				return
			}
			// The reader that has waited longest goes first: a stream
			// being read can hold as much as a stalled one for a moment.
			var victim *Stream
			var most int64
			var oldest int64
			for st := range b.streams {
				n := st.unreadOf()
				if n == 0 {
					continue
				}
				last := st.lastRead.Load()
				if victim == nil || last < oldest || last == oldest && n > most {
					victim, most, oldest = st, n, last
				}
			}
			b.mu.Unlock()
			if victim == nil || most == 0 {
				b.mu.Lock()
				b.sweeping = false
				b.mu.Unlock()
				return
			}
			idle := time.Since(time.Unix(0, victim.lastRead.Load()))
			victim.Reset()
			if b.OnShed != nil {
				b.OnShed(victim, most, idle)
			}
		}
	}()
}
