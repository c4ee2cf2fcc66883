package latency

import "sync"

// queue is one direction's chunks in flight, oldest first, holding at
// most MaxInFlight bytes: a chunk counts the buffer that holds its data.
type queue struct {
	mu       sync.Mutex
	nonEmpty sync.Cond // signalled by push and close
	hasRoom  sync.Cond // signalled by release and close
	chunks   []chunk   // guarded by mu
	bytes    int       // held by the chunks, until released; guarded by mu
	closed   bool      // guarded by mu
}

func newQueue() *queue {
	q := &queue{}
	q.nonEmpty.L = &q.mu
	q.hasRoom.L = &q.mu
	return q
}

// push adds a chunk, waiting while the queue holds too much to take it.
// It reports false once the queue is closed.
func (q *queue) push(c chunk) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && q.bytes+c.size() > MaxInFlight {
		q.hasRoom.Wait()
	}
	if q.closed {
		return false
	}
	q.chunks = append(q.chunks, c)
	q.bytes += c.size()
	q.nonEmpty.Signal()
	return true
}

// pop takes the oldest chunk, waiting for one; its bytes count until
// release. It reports false once the queue is closed.
func (q *queue) pop() (chunk, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && len(q.chunks) == 0 {
		q.nonEmpty.Wait()
	}
	if q.closed {
		return chunk{}, false
	}
	c := q.chunks[0]
	q.chunks[0] = chunk{}
	q.chunks = q.chunks[1:]
	return c, true
}

// release frees the room of a chunk that has been written, and puts
// back its buffer.
func (q *queue) release(c chunk) {
	q.mu.Lock()
	q.bytes -= c.size()
	q.mu.Unlock()
	q.hasRoom.Signal()
	if c.buf != nil {
		buffers.Put(c.buf)
	}
}

// size is the memory a chunk holds.
func (c chunk) size() int {
	if c.buf != nil {
		return cap(*c.buf)
	}
	return len(c.data)
}

// close wakes every waiter; push and pop fail from then on.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.chunks = nil
	q.mu.Unlock()
	q.nonEmpty.Broadcast()
	q.hasRoom.Broadcast()
}
