package tunnel

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// copyBufferSize is the size of each pooled copy buffer.
const copyBufferSize = 32 << 10

var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

// smallReadBuffers holds the buffers of smallReadSize each pipe starts with:
// pooled too, since every connection takes two and most are short.
var smallReadBuffers = sync.Pool{New: func() any {
	b := make([]byte, smallReadSize)
	return &b
}}

// Join relays bytes between a and b until both directions have ended, then
// closes both. A clean end of one direction (EOF) is passed on as a
// half-close, so the other direction keeps flowing; an error in either
// direction ends both at once, as a reset: a TCP connection is closed
// with an RST, and a Stream is reset, so that neither end waits for data
// nobody will read. When idle is positive, the relay ends after idle
// passes with no byte moving in either direction.
func Join(a, b net.Conn, idle time.Duration) { JoinHandshake(a, b, 0, idle) }

// JoinHandshake is Join, with handshake for idle until a has sent bytes
// after b's first (when handshake is positive): a TLS visitor, a, that
// sent its ClientHello, got the upstream's answer and went silent is let
// go after handshake, not idle.
func JoinHandshake(a, b net.Conn, handshake, idle time.Duration) {
	var j joiner
	j.idle, j.handshake, j.a = idle, handshake, a
	j.touch()
	done := make(chan struct{})
	go func() {
		j.pipe(a, b)
		close(done)
	}()
	j.pipe(b, a)
	<-done
	a.Close()
	b.Close()
}

type joiner struct {
	idle, handshake time.Duration
	// a is JoinHandshake's a; turns counts its handshake's turns: 1 once
	// b has sent bytes, 2 once a has sent bytes after that.
	a     net.Conn
	turns atomic.Int32
	// last is when a byte last moved either way, in UnixNano.
	last atomic.Int64
	// abort is set once one direction failed; both ends are then closed.
	abort sync.Once
}

func (j *joiner) touch() {
	if j.idle > 0 || j.handshake > 0 {
		j.last.Store(time.Now().UnixNano())
	}
}

// timeout is the idle timeout now: handshake until its turns are done.
func (j *joiner) timeout() time.Duration {
	if j.handshake > 0 && j.turns.Load() < 2 {
		return j.handshake
	}
	return j.idle
}

// moved notes bytes read from src, for the handshake's turns.
func (j *joiner) moved(src net.Conn) {
	if j.handshake <= 0 {
		return
	}
	switch t := j.turns.Load(); {
	case t == 0 && src != j.a:
		j.turns.CompareAndSwap(0, 1)
	case t == 1 && src == j.a:
		j.turns.CompareAndSwap(1, 2)
	}
}

// pipe copies src to dst.
func (j *joiner) pipe(dst, src net.Conn) {
	err := j.copy(dst, src)
	if err != nil {
		// An idle relay ends quietly: nothing is in flight, and a TCP
		// peer gets a FIN. Any other error is passed on as a reset.
		hard := !errors.Is(err, errIdle)
		j.abort.Do(func() {
			abort(src, hard)
			abort(dst, hard)
		})
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}

// smallReadSize is the buffer a pipe reads into while its source sends
// little or nothing: a quiet connection (an idle visitor, a silent one
// that sent a ClientHello and stopped) holds that much, not a pooled copy
// buffer. A read that fills it takes a pooled buffer for the next reads,
// given back once a read comes back under half of it.
const smallReadSize = 2 << 10

// copy is io.CopyBuffer without ReaderFrom/WriterTo (which would bypass the
// buffers and allocate their own), with the idle deadline.
func (j *joiner) copy(dst, src net.Conn) error {
	smallBuf := smallReadBuffers.Get().(*[]byte)
	small := *smallBuf
	var pooled *[]byte
	defer func() {
		smallReadBuffers.Put(smallBuf)
		if pooled != nil {
			copyBuffers.Put(pooled)
		}
	}()
	// The read deadline is set when the timeout starts or changes, not at
	// every read: when it passes, the relay ends only if no byte has
	// moved either way for the timeout, and otherwise the deadline moves
	// to the last move plus the timeout. A busy relay sets it seldom.
	var set time.Duration // the timeout src's read deadline was set for; 0: none
	for {
		buf := small
		if pooled != nil {
			buf = *pooled
		}
		switch timeout := j.timeout(); {
		case timeout > 0 && timeout != set:
			src.SetReadDeadline(time.Now().Add(timeout))
			set = timeout
		case timeout == 0 && set != 0:
			// The handshake is over, and the join has no idle limit.
			src.SetReadDeadline(time.Time{})
			set = 0
		}
		n, err := src.Read(buf)
		if n > 0 {
			j.touch()
			j.moved(src)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case pooled == nil && n == len(small):
			pooled = copyBuffers.Get().(*[]byte)
		case pooled != nil && n < len(buf)/2:
			copyBuffers.Put(pooled)
			pooled = nil
		}
		if err == nil {
			continue
		}
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Idle in this direction: carry on while the other one moves.
			// A deadline left from the handshake, on a join with no idle
			// limit (0), is no reason to end it.
			t := j.timeout()
			if t == 0 {
				continue
			}
			if next := time.Unix(0, j.last.Load()).Add(t); time.Now().Before(next) {
				src.SetReadDeadline(next)
				set = t
				continue
			}
			return errIdle
		}
		return err
	}
}

// abort closes c at once: a Stream is reset, and when hard a TCP
// connection sends an RST rather than a FIN.
func abort(c net.Conn, hard bool) {
	switch c := c.(type) {
	case interface{ Reset() }: // a Stream, or a type embedding one
		c.Reset()
	case *net.TCPConn:
		if hard {
			c.SetLinger(0)
		}
	}
	c.Close()
}

// errIdle ends a relay that has been idle for its timeout.
var errIdle = errors.New("tunnel: idle timeout")
