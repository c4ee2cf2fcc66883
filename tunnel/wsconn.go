package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is a net.Conn over a WebSocket: the binary messages, read in order,
// form its byte stream (see the package documentation). It carries one
// yamux session, and knows nothing of yamux's frames: what it is given to
// write is bytes.
//
// Reads go through gorilla's NextReader, so a message is never buffered
// whole. Writes do not go through gorilla: Conn frames each Write as one
// message (masked on the client's side, as RFC 6455 requires, and split
// if larger than MaxMessageSize) and appends it to a pending buffer, which
// a flusher goroutine, started when there is something to send and gone
// when there is not, writes with one system call. Messages queued while a
// write is in progress go out together in the next one, so a busy session
// makes a fraction of the system calls of one write per message, and its
// writers do not wait for the socket; at most maxPending bytes wait, and
// beyond that Write blocks. For this to be safe Conn must be the only
// writer: NewConn replaces gorilla's ping and close handlers, the only
// ones that write on their own, with its own, which answer a Ping with a
// Pong and a Close with a Close through the pending buffer (a peer's
// protocol error, which makes gorilla write a close frame, ends the
// session anyway).
//
// One goroutine may read while others write.
type Conn struct {
	ws *websocket.Conn
	// nc is the connection ws reads from; Conn writes messages to it.
	nc net.Conn
	// mask is set on the client's side, which must mask what it sends.
	mask bool

	// reader is the message being read; only Read touches it.
	reader io.Reader
	// idle, when positive, is how long Read waits for the next message.
	idle time.Duration
	// onHeard, if set, is told of every read of the peer's bytes (see
	// the server's watchdog).
	onHeard func()

	// writeMu serialises writers and guards what follows.
	writeMu sync.Mutex
	// pending holds whole messages for the flusher to write; nil when none.
	pending *[]byte
	// flushing is set while the flusher goroutine runs.
	flushing bool
	// flushed is signalled when the flusher takes pending and when it ends.
	flushed sync.Cond
	// werr is the first write error, or net.ErrClosed once Conn is
	// closed: every later Write returns it.
	werr error

	// closeMu guards closed and onClose.
	closeMu sync.Mutex
	closed  bool
	onClose func()
	// onEnd, if set, runs on the first Close, before it returns: the
	// session's own bookkeeping.
	onEnd func()
}

// WebSocket framing (RFC 6455, section 5.2).
const (
	finalBinaryFrame   = 0x80 | websocket.BinaryMessage
	maskBit            = 0x80
	maxFrameHeaderSize = 2 + 8 + 4
)

// Sides of a Conn.
const (
	ServerSide = false
	ClientSide = true
)

// NewConn adapts ws, as the client (ClientSide) or the server (ServerSide).
// It sets ws's read limit to MaxMessageSize and takes over writing.
func NewConn(ws *websocket.Conn, client bool) *Conn {
	ws.SetReadLimit(MaxMessageSize)
	c := &Conn{ws: ws, nc: ws.NetConn(), mask: client}
	c.flushed.L = &c.writeMu
	// Conn writes the answers RFC 6455 (section 5.5) asks for, a Pong to
	// a Ping and a Close to a Close, itself: gorilla's own would write
	// behind its back.
	ws.SetPingHandler(func(data string) error {
		c.control(websocket.PongMessage, []byte(data))
		return nil
	})
	ws.SetCloseHandler(func(code int, _ string) error {
		var payload []byte
		if code != websocket.CloseNoStatusReceived {
			payload = binary.BigEndian.AppendUint16(nil, uint16(code))
		}
		c.control(websocket.CloseMessage, payload)
		return nil
	})
	return c
}

// control queues a WebSocket control frame (at most 125 bytes of payload)
// between the messages.
func (c *Conn) control(opcode int, payload []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.werr == nil {
		c.appendWSFrame(0x80|byte(opcode), payload[:min(len(payload), 125)])
		c.startFlusher()
	}
}

// SetIdleTimeout makes Read fail once no message has begun for d. The
// server's side of a session uses it instead of sending pings of its own:
// the client pings every KeepAliveInterval, so silence means it is gone.
func (c *Conn) SetIdleTimeout(d time.Duration) { c.idle = d }

// Read reads from the current message, moving on to the next one at its
// end.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			if c.idle > 0 {
				c.ws.SetReadDeadline(time.Now().Add(c.idle))
			}
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, readError(err)
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: got a message of type %d, want binary", typ)
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if n > 0 && c.onHeard != nil {
			c.onHeard()
		}
		if err == io.EOF {
			c.reader = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, readError(err)
	}
}

// readError maps a WebSocket close to io.EOF.
func readError(err error) error {
	if _, ok := err.(*websocket.CloseError); ok {
		return io.EOF
	}
	return err
}

// maxPending is how many bytes of messages may wait for the flusher
// before Write blocks.
const maxPending = 256 << 10

// closeFlushTimeout bounds how long Close waits for pending messages (a
// rejection's reason, yamux's Go Away) to reach the socket.
const closeFlushTimeout = time.Second

// Write queues p as one binary message, or several if it is larger than
// MaxMessageSize.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	for c.werr == nil && c.pending != nil && len(*c.pending) >= maxPending {
		c.flushed.Wait()
	}
	if c.werr != nil {
		return 0, c.werr
	}
	n := len(p)
	for len(p) > 0 {
		part := p[:min(len(p), MaxMessageSize)]
		c.appendWSFrame(finalBinaryFrame, part)
		p = p[len(part):]
	}
	c.startFlusher()
	return n, nil
}

// appendWSFrame appends p to pending as one frame whose first byte (FIN
// bit and opcode) is first. The caller holds writeMu.
func (c *Conn) appendWSFrame(first byte, p []byte) {
	n := len(p)
	c.reserve(maxFrameHeaderSize + n)
	buf := append(*c.pending, first, 0)
	lenByte := len(buf) - 1
	switch {
	case n <= 125:
		buf[lenByte] = byte(n)
	case n <= 0xffff:
		buf[lenByte] = 126
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf[lenByte] = 127
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	if c.mask {
		buf[lenByte] |= maskBit
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], rand.Uint32())
		buf = append(buf, key[:]...)
		start := len(buf)
		buf = slices.Grow(buf, n)[:start+n]
		maskCopy(buf[start:], p, key)
	} else {
		buf = append(buf, p...)
	}
	*c.pending = buf
}

// reserve makes room in pending for n more bytes. A session's small
// messages (a pong, a window update, a short answer) take a small buffer,
// which moves to a large one only when data comes: an idle session, whose
// only messages are answers to its client's pings, should not hold a
// 64 KiB buffer each time it writes.
func (c *Conn) reserve(n int) {
	if c.pending == nil {
		if n <= smallBufferSize {
			c.pending = smallBuffers.Get().(*[]byte)
		} else {
			c.pending = frameBuffers.Get().(*[]byte)
		}
		return
	}
	if buf := *c.pending; cap(buf) == smallBufferSize && len(buf)+n > smallBufferSize {
		big := frameBuffers.Get().(*[]byte)
		*big = append((*big)[:0], buf...)
		putBuffer(c.pending)
		c.pending = big
	}
}

// startFlusher starts the flusher if messages wait and none runs. The
// caller holds writeMu.
func (c *Conn) startFlusher() {
	if c.pending != nil && !c.flushing {
		c.flushing = true
		go c.flush()
	}
}

// flush writes pending messages until none are left, then ends.
func (c *Conn) flush() {
	// Let the session's writer, which has just queued a message and
	// started this goroutine, queue what else it has first: busy sessions
	// then write several messages per system call. Measured with 50
	// kept-alive connections of small requests through a TCP tunnel: 1.8
	// write calls per request in Caddy and in the client without the
	// yield, 1.2 with it, and 7% more requests a second.
	runtime.Gosched()
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	for c.pending != nil && c.werr == nil {
		buf := c.pending
		c.pending = nil
		c.flushed.Broadcast()
		c.writeMu.Unlock()
		_, err := c.nc.Write(*buf)
		putBuffer(buf)
		c.writeMu.Lock()
		if err != nil && c.werr == nil {
			c.werr = err
		}
	}
	if c.pending != nil {
		putBuffer(c.pending)
		c.pending = nil
	}
	c.flushing = false
	c.flushed.Broadcast()
}

// frameBuffers and smallBuffers hold the messages waiting for a flusher:
// large ones for data, small ones for a few control messages.
var (
	frameBuffers = sync.Pool{New: func() any {
		b := make([]byte, 0, 64<<10)
		return &b
	}}
	smallBuffers = sync.Pool{New: func() any {
		b := make([]byte, 0, smallBufferSize)
		return &b
	}}
)

const smallBufferSize = 512

// putBuffer returns a pending buffer to its pool.
func putBuffer(b *[]byte) {
	*b = (*b)[:0]
	if cap(*b) == smallBufferSize {
		smallBuffers.Put(b)
	} else {
		frameBuffers.Put(b)
	}
}

// maskCopy copies src to dst, XORed with the repeated key (RFC 6455,
// section 5.3), 32 bytes at a time: one pass over the bytes, where a copy
// and then masking in place took two (a sixth of a client's CPU on bulk
// uploads went to the two). dst must be at least as long as src.
func maskCopy(dst, src []byte, key [4]byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k := uint64(k32) | uint64(k32)<<32
	dst = dst[:len(src)]
	for len(src) >= 32 {
		d, s := dst[:32:32], src[:32:32]
		binary.LittleEndian.PutUint64(d[0:], binary.LittleEndian.Uint64(s[0:])^k)
		binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(s[8:])^k)
		binary.LittleEndian.PutUint64(d[16:], binary.LittleEndian.Uint64(s[16:])^k)
		binary.LittleEndian.PutUint64(d[24:], binary.LittleEndian.Uint64(s[24:])^k)
		dst, src = dst[32:], src[32:]
	}
	for len(src) >= 8 {
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^k)
		dst, src = dst[8:], src[8:]
	}
	for i := range src {
		dst[i] = src[i] ^ key[i&3]
	}
}

// Close closes the underlying connection without a closing handshake: yamux
// has already said goodbye when it closes its transport.
func (c *Conn) Close() error {
	c.closeMu.Lock()
	f := c.onClose
	first := !c.closed
	c.closed = true
	c.closeMu.Unlock()
	if first && c.onEnd != nil {
		c.onEnd()
	}
	if first && f != nil {
		go f()
	}
	c.writeMu.Lock()
	if c.flushing {
		// Let what is queued go out (a rejection's reason, a Go Away),
		// for a moment at most.
		c.nc.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		for c.flushing {
			c.flushed.Wait()
		}
	}
	if c.werr == nil {
		c.werr = net.ErrClosed
	}
	c.writeMu.Unlock()
	err := c.ws.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// OnClose has f run once, on a goroutine of its own, when c is first
// closed, or at once if it already is. yamux closes its transport whenever
// its session ends, whatever the cause, so f sees the end of the session
// without a goroutine waiting for it all the session's life.
func (c *Conn) OnClose(f func()) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	c.onClose = f
	if c.closed {
		go f()
	}
}

func (c *Conn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

func (c *Conn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

var _ net.Conn = (*Conn)(nil)
