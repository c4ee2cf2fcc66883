package tunnel

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/yamux"
)

// Budget bounds the bytes that peers have sent on data streams and that
// no reader has taken yet, across every session that shares it: on the
// server, what visitors who do not read pin in its memory; on a client,
// what upstreams that do not read pin in the client's.
//
// What a stream holds unread is at most its receive window, and it holds
// nothing while its reader waits in Read (yamux hands a waiting reader
// every byte as it comes). So the budget counts, as a bound that needs no
// look inside yamux:
//
//	exposed × MinStreamWindow + grown
//
// where exposed is the number of streams whose reader is not waiting in
// Read (busy elsewhere, or gone), and grown what the windows of all
// streams have grown beyond MinStreamWindow. Window growth is reserved
// from the budget, and refused once grown would pass half the limit, so
// that growth alone can never use it up: a stream then keeps the window it
// has. Once the count passes three quarters of the limit, the exposed
// streams whose reader left Read longest ago, at least Grace ago, are
// reset, one after the other, until it is back under 90% of that; past
// the limit itself, they are reset whatever their grace. The readers who
// stopped reading are cut, not the others.
//
// A stream the peer opened (a client's) is set up first: the client reads
// its header, connects its upstream and replies, and only then relays.
// Until its reader comes back to Read after a Reply that takes it, the
// stream is pending, not exposed: what it holds is what the server sent
// before it read the reply, the header and at most MaxEarlyData as the
// protocol has it, whatever the set-up waits for (and, between the reply
// and the relay's first Read, what the server sends on). So a pending
// stream counts as MaxEarlyData in the count that wakes the sweep (a
// third term, pending × MaxEarlyData), and as the bytes it really holds
// in the sweep's decisions, where it is cut, away since it was accepted,
// when what pending streams hold is what passes the mark: a burst of new
// visitors, each holding a few bytes while its upstream is dialled, costs
// no one a stream, and visitors who each send their MaxEarlyData to an
// upstream that is slow to answer are bounded all the same. (A server
// that breaks the protocol could put a window in each pending stream, for
// as long as the set-up lasts.)
type Budget struct {
	limit atomic.Int64
	// exposed, grown and pending are the terms of the count.
	exposed, grown, pending atomic.Int64

	// mu guards sessions and sweeping.
	mu       sync.Mutex
	sessions map[*Session]struct{}
	sweeping bool

	// OnShed, if set, is told of each stream the budget resets, with how
	// long its reader had been away.
	OnShed func(st *Stream, idle time.Duration)
}

// NewBudget returns a budget of limit bytes; 0 or less: no limit.
func NewBudget(limit int64) *Budget {
	b := &Budget{sessions: make(map[*Session]struct{})}
	b.limit.Store(limit)
	return b
}

// SetLimit changes the limit, as a reloaded config may.
func (b *Budget) SetLimit(limit int64) { b.limit.Store(limit) }

// Limit is the budget's limit.
func (b *Budget) Limit() int64 { return b.limit.Load() }

// Used is the bound counted now: what the budget's streams may hold
// unread at most (pending streams, at most what the protocol lets a peer
// send before the reply).
func (b *Budget) Used() int64 {
	return b.exposed.Load()*MinStreamWindow + b.grown.Load() + b.pending.Load()*MaxEarlyData
}

// Grown is what the windows of the budget's streams have grown beyond
// MinStreamWindow.
func (b *Budget) Grown() int64 { return b.grown.Load() }

func (b *Budget) addSession(s *Session) {
	b.mu.Lock()
	b.sessions[s] = struct{}{}
	b.mu.Unlock()
}

func (b *Budget) removeSession(s *Session) {
	b.mu.Lock()
	delete(b.sessions, s)
	b.mu.Unlock()
}

// expose counts a stream whose reader left Read (or that has none yet),
// and cuts streams if that passes the limit.
func (b *Budget) expose() {
	b.exposed.Add(1)
	b.check()
}

// pend counts a stream being set up, and cuts streams if that passes the
// limit.
func (b *Budget) pend() {
	b.pending.Add(1)
	b.check()
}

// check starts a sweep once the count passes three quarters of the limit.
func (b *Budget) check() {
	if b.Used() > b.soft() && b.limit.Load() > 0 {
		b.sweep()
	}
}

// cover uncounts a stream whose reader waits in Read, or that has ended.
func (b *Budget) cover() { b.exposed.Add(-1) }

// settle uncounts a pending stream: set up, or ended.
func (b *Budget) settle() { b.pending.Add(-1) }

// errNoGrowth refuses a window's growth.
var errNoGrowth = errors.New("tunnel: the budget has no room for a larger window")

// span is yamux's MemoryManager for one stream: it counts the stream's
// window growth in the budget. yamux reserves a stream's initial window
// (at priority 255) when it opens or accepts the stream, and growth (at a
// lower priority) as the window grows; the initial window is counted by
// exposure instead, and is never refused: a refusal there would end the
// whole session on the client's side.
type span struct {
	b     *Budget
	grown atomic.Int64
}

// memoryManager is the factory yamux calls for each new stream.
func (b *Budget) memoryManager() (yamux.MemoryManager, error) { return &span{b: b}, nil }

func (s *span) ReserveMemory(size int, prio uint8) error {
	if prio == 255 {
		return nil
	}
	// Compare and swap, not add and take back: the count never shows,
	// even for a moment, growth that was refused (the sweep reads it).
	limit := s.b.limit.Load()
	for {
		g := s.b.grown.Load()
		if limit > 0 && g+int64(size) > limit/2 {
			return errNoGrowth
		}
		if s.b.grown.CompareAndSwap(g, g+int64(size)) {
			s.grown.Add(int64(size))
			return nil
		}
	}
}

func (s *span) ReleaseMemory(size int) {
	s.grown.Add(-int64(size))
	s.b.grown.Add(-int64(size))
}

func (s *span) Done() { s.b.grown.Add(-s.grown.Swap(0)) }

// Grace is how long a reader may be away from Read before the budget
// cuts its stream while the count is between three quarters of the limit
// and the limit: a burst of new streams, each counted until its reader
// first waits for data, or a reader's short pause, costs no one a stream.
// At the limit, the longest away is cut at once.
const Grace = 250 * time.Millisecond

// sweep resets streams, the longest away from Read first, until the
// count is back under 90% of three quarters of the limit. One sweep runs
// at a time, on a goroutine of its own: it is started from a reader.
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
			victim, away, wait := b.nextVictim()
			switch {
			case victim != nil:
				victim.Reset()
				if b.OnShed != nil {
					b.OnShed(victim, away)
				}
			case wait > 0:
				time.Sleep(wait)
			default:
				return
			}
		}
	}()
}

// watchInterval is how often a sweep over the soft limit, with no stream
// to cut yet, looks again.
const watchInterval = 50 * time.Millisecond

// nextVictim is the stream holding unread data whose reader left Read
// longest ago (a pending stream's: since it was accepted): at once while
// the count is over the limit, once past its Grace while it is over
// three quarters of it; or how long to wait until the longest away passes
// its grace, or until data arrives for a stream that holds none yet (one
// whose reader has not started, in a burst of new streams: cutting it
// would free nothing). Pending streams count here as what they hold. When
// the count is back under the mark it ends the sweep, under the same
// lock, so that a stream counted meanwhile starts another.
func (b *Budget) nextVictim() (victim *Stream, away, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	mark, limit := b.soft()*9/10, b.limit.Load()
	if limit <= 0 || b.Used() <= mark {
		b.sweeping = false
		return nil, 0, 0
	}
	bound := b.exposed.Load()*MinStreamWindow + b.grown.Load()
	used := bound
	// The oldest exposed and the oldest pending stream holding data.
	var exposed, pending *Stream
	var exposedLeft, pendingLeft int64
	watch := false
	for s := range b.sessions {
		s.eachStream(func(st *Stream) {
			left := st.leftRead.Load()
			isPending := left == pendingSetUp
			if isPending {
				left = st.accepted
			}
			if left <= 0 {
				return
			}
			watch = true
			held := st.st.Buffered()
			switch {
			case held == 0:
			case isPending:
				used += int64(held)
				if pending == nil || left < pendingLeft {
					pending, pendingLeft = st, left
				}
			case exposed == nil || left < exposedLeft:
				exposed, exposedLeft = st, left
			}
		})
	}
	// Pending streams are cut only when what they really hold is what
	// passes the mark: with the exposed streams' bound over it by
	// itself, cutting them would free a few bytes each, and no more.
	victim, oldest := exposed, exposedLeft
	if pending != nil && bound <= mark && (victim == nil || pendingLeft < oldest) {
		victim, oldest = pending, pendingLeft
	}
	switch {
	case watch && (victim == nil || used <= mark):
		// Nothing to cut yet, or what pending streams hold is under
		// the mark: they may get more.
		return nil, 0, watchInterval
	case victim == nil:
		b.sweeping = false
		return nil, 0, 0
	}
	if away = time.Since(time.Unix(0, oldest)); away < Grace && used <= limit {
		return nil, 0, Grace - away
	}
	return victim, away, 0
}

// soft is three quarters of the limit, past which readers away for their
// grace are cut.
func (b *Budget) soft() int64 { return b.limit.Load() / 4 * 3 }
