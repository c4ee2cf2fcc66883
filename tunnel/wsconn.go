package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is a net.Conn over a WebSocket: the binary messages, read in order,
// form its byte stream (see the package documentation). It carries one
// yamux session, and follows that session's frames in both directions,
// which lets it do what yamux cannot: reset a stream on both sides at once
// (ResetStream), and tell whether the peer still answers (see watchdog).
//
// Reads go through gorilla's NextReader, so a message is never buffered
// whole. Writes do not go through gorilla: Conn frames each message itself
// (masked on the client's side, as RFC 6455 requires) and appends it to a
// pending buffer, which a flusher goroutine, started when there is
// something to send and gone when there is not, writes with one system
// call. Frames queued while a write is in progress go out together in the
// next one, so a busy session makes a fraction of the system calls of one
// write per frame, and its writers do not wait for the socket; at most
// maxPending bytes wait, and beyond that Write blocks. For this to be safe
// Conn must be the only writer: NewConn replaces gorilla's ping and close
// handlers, the only ones that write on their own, with its own, which
// answer a Ping with a Pong and a Close with a Close through the pending
// buffer (a peer's protocol error, which makes gorilla write a close
// frame, ends the session anyway).
//
// yamux writes a data frame as two calls, its 12-byte header and then its
// body; Conn sends the two as one message. One goroutine may read while
// another writes.
type Conn struct {
	ws *websocket.Conn
	// nc is the connection ws reads from; Conn writes frames to it.
	nc net.Conn
	// mask is set on the client's side, which must mask what it sends.
	mask bool

	// reader is the message being read, and in the yamux frames read so
	// far; only Read touches them.
	reader io.Reader
	in     frameCursor
	// idle, when positive, is how long Read waits for the next message.
	idle time.Duration
	// inspect, if set, sees each frame header the peer sends before yamux
	// does; an error from it ends the session.
	inspect func(h *yamuxHeader) error
	// inspectFailed is inspect's error, once it has returned one.
	inspectFailed atomic.Pointer[error]

	// injectMu guards injected and injecting.
	injectMu sync.Mutex
	// injected holds frames for Read to hand yamux as if the peer had sent
	// them, at the next frame boundary; injecting is their number, read
	// without the lock on every Read.
	injected  []yamuxHeader
	injecting atomic.Int32
	// handing is the rest of an injected frame that Read has begun to hand
	// over, an RST for stream handingID; only Read touches them.
	handing   []byte
	handingID uint32

	// watch tells whether the peer still answers; nil when not watched.
	watch *watchdog

	// budget, when set, counts the data the peer sends on the streams in
	// tracked (by ID, guarded by trackMu) until it is read.
	budget  *Budget
	trackMu sync.Mutex
	tracked map[uint32]*Stream

	// writeMu serialises writers and guards what follows.
	writeMu sync.Mutex
	// out follows the frames yamux writes. Its header is held back, once
	// whole, until the first bytes of its body come, so that the two go
	// out as one message.
	out frameCursor
	// dropping is set while the frame being written belongs to a stream
	// reset by ResetStream: it is not sent.
	dropping bool
	// reset holds the streams reset by ResetStream whose frames yamux may
	// still write: they are dropped.
	reset map[uint32]struct{}
	// queued holds frames to send at the next frame boundary.
	queued []yamuxHeader
	// pending holds whole frames for the flusher to write; nil when none.
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
		c.appendWSFrame(0x80|byte(opcode), payload[:min(len(payload), 125)], nil)
		c.startFlusher()
	}
}

// track counts what st holds unread in the Conn's budget, if it has one.
func (c *Conn) track(st *Stream) {
	if c.budget == nil {
		return
	}
	st.budget = c.budget
	st.lastRead.Store(time.Now().UnixNano())
	c.trackMu.Lock()
	if c.tracked == nil {
		c.tracked = make(map[uint32]*Stream)
	}
	c.tracked[st.ID()] = st
	c.trackMu.Unlock()
	c.budget.add(st)
}

// untrack takes st out of the budget.
func (c *Conn) untrack(st *Stream) {
	if st.budget == nil {
		return
	}
	c.trackMu.Lock()
	delete(c.tracked, st.ID())
	c.trackMu.Unlock()
	st.budget.remove(st)
}

// inspectErr is the error with which inspect ended the session, or nil.
func (c *Conn) inspectErr() error {
	if p := c.inspectFailed.Load(); p != nil {
		return *p
	}
	return nil
}

// Watch has Conn tell when its peer stops answering: see watchdog. Call
// it before the session starts.
func (c *Conn) Watch(probe, timeout time.Duration, onDead func()) {
	c.watch = newWatchdog(c, probe, timeout, onDead)
}

// SetIdleTimeout makes Read fail once no message has begun for d. The
// server's side of a session uses it instead of sending pings of its own:
// the client pings every KeepAliveInterval, so silence means it is gone.
func (c *Conn) SetIdleTimeout(d time.Duration) { c.idle = d }

// Read reads from the current message, moving on to the next one at its
// end. At a frame boundary it first hands over the frames that ResetStream
// injected.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.handing) > 0 || c.injecting.Load() > 0 && c.in.atBoundary() {
		return c.handOver(p), nil
	}
	if c.injecting.Load() > 0 {
		// Stop at the end of this frame, to inject at its boundary.
		p = p[:min(len(p), c.in.left())]
	}
	n, err := c.read(p)
	if n > 0 {
		if c.watch != nil {
			c.watch.heard()
		}
		var ierr error
		c.in.scan(p[:n], func(h *yamuxHeader) {
			if c.inspect != nil && ierr == nil {
				ierr = c.inspect(h)
			}
			if c.budget != nil && h.typ() == yamuxTypeData && h.length() > 0 {
				c.trackMu.Lock()
				st := c.tracked[h.streamID()]
				c.trackMu.Unlock()
				if st != nil {
					c.budget.received(st, int64(h.length()))
				}
			}
		})
		if ierr != nil {
			c.inspectFailed.Store(&ierr)
			return 0, ierr
		}
	}
	return n, err
}

// handOver copies injected frames into p, as much as fits.
func (c *Conn) handOver(p []byte) int {
	if len(c.handing) == 0 {
		c.injectMu.Lock()
		h := c.injected[0]
		c.injected = c.injected[1:]
		c.injecting.Add(-1)
		c.injectMu.Unlock()
		c.handing, c.handingID = h[:], h.streamID()
	}
	n := copy(p, c.handing)
	c.handing = c.handing[n:]
	if len(c.handing) == 0 {
		// yamux has the RST: it writes nothing more for the stream,
		// but for what it may have queued already, which the peer
		// ignores.
		c.forgetReset(c.handingID)
	}
	return n
}

// read reads the WebSocket's byte stream.
func (c *Conn) read(p []byte) (int, error) {
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

// maxPending is how many bytes of frames may wait for the flusher before
// Write blocks.
const maxPending = 256 << 10

// closeFlushTimeout bounds how long Close waits for pending frames (a
// rejection's reason, yamux's Go Away) to reach the socket.
const closeFlushTimeout = time.Second

// Write queues p as one or more binary messages. p is yamux's: a frame
// header, or part of a frame body, or both.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	for c.werr == nil && c.pending != nil && len(*c.pending) >= maxPending {
		c.flushed.Wait()
	}
	if c.werr != nil {
		return 0, c.werr
	}
	defer c.startFlusher()
	n := len(p)
	for len(p) > 0 {
		if c.out.body > 0 {
			chunk := p[:min(len(p), c.out.body)]
			p = p[len(chunk):]
			c.out.body -= len(chunk)
			c.writeBody(chunk)
			if c.out.body == 0 {
				c.frameWritten()
			}
			continue
		}
		if c.out.headerLen > 0 || len(p) < yamuxHeaderSize {
			// A header in pieces, which yamux never writes: pass them
			// on as they come, and follow the frame.
			k := copy(c.out.header[c.out.headerLen:], p)
			c.appendFrame(p[:k], nil)
			c.out.headerLen += k
			p = p[k:]
			if c.out.headerLen < yamuxHeaderSize {
				break
			}
			c.out.headerLen = 0
			if c.out.body = c.out.header.bodyLen(); c.out.body == 0 {
				c.frameWritten()
			}
			continue
		}
		copy(c.out.header[:], p)
		c.out.headerLen = yamuxHeaderSize
		p = p[yamuxHeaderSize:]
		h := &c.out.header
		c.dropping = false
		if len(c.reset) > 0 && h.typ() <= yamuxTypeWindowUpdate {
			_, c.dropping = c.reset[h.streamID()]
		}
		if c.watch != nil && !c.dropping && h.streamID() != controlStreamID &&
			(h.typ() == yamuxTypeData || h.flags()&yamuxFlagSYN != 0) {
			c.watch.spoke()
		}
		if c.out.body = c.out.header.bodyLen(); c.out.body == 0 {
			if !c.dropping {
				c.appendFrame(c.out.header[:], nil)
			}
			c.frameWritten()
		}
	}
	return n, nil
}

// writeBody queues a chunk of the current frame's body, with the frame's
// header if it is the first.
func (c *Conn) writeBody(chunk []byte) {
	if c.dropping {
		c.out.headerLen = 0
		return
	}
	if c.out.headerLen > 0 {
		c.out.headerLen = 0
		if yamuxHeaderSize+len(chunk) <= MaxMessageSize {
			c.appendFrame(c.out.header[:], chunk)
			return
		}
		c.appendFrame(c.out.header[:], nil)
	}
	for len(chunk) > 0 {
		part := chunk[:min(len(chunk), MaxMessageSize)]
		c.appendFrame(part, nil)
		chunk = chunk[len(part):]
	}
}

// frameWritten ends the current frame: the frames queued for a boundary
// go out now.
func (c *Conn) frameWritten() {
	c.out.headerLen = 0
	c.dropping = false
	for _, h := range c.queued {
		c.appendFrame(h[:], nil)
	}
	c.queued = c.queued[:0]
}

// sendFrame sends h, a frame of Conn's own, at the next frame boundary of
// what yamux writes. The caller holds writeMu.
func (c *Conn) sendFrame(h yamuxHeader) {
	if c.werr != nil {
		return
	}
	if c.out.atBoundary() {
		c.appendFrame(h[:], nil)
		c.startFlusher()
		return
	}
	c.queued = append(c.queued, h)
}

// ResetStream resets stream id on both sides at once, which yamux's API
// cannot: it sends the peer an RST for it, has the local yamux session
// handle an RST for it too (injected into what it reads, at the next frame
// boundary), and drops whatever yamux still writes for it. yamux then
// forgets the stream, and discards the data the peer sent before it saw
// the RST, rather than keeping it until a close timer fires.
func (c *Conn) ResetStream(id uint32) {
	c.writeMu.Lock()
	if c.reset == nil {
		c.reset = make(map[uint32]struct{})
	}
	c.reset[id] = struct{}{}
	c.sendFrame(resetFrame(id))
	c.writeMu.Unlock()

	c.injectMu.Lock()
	c.injected = append(c.injected, resetFrame(id))
	c.injecting.Add(1)
	c.injectMu.Unlock()
}

// forgetReset stops dropping the frames of a reset stream, once yamux
// has seen its RST and writes nothing more for it.
func (c *Conn) forgetReset(id uint32) {
	c.writeMu.Lock()
	delete(c.reset, id)
	c.writeMu.Unlock()
}

// appendFrame appends a and b, concatenated, to pending as one final binary
// frame. The caller holds writeMu.
func (c *Conn) appendFrame(a, b []byte) { c.appendWSFrame(finalBinaryFrame, a, b) }

// appendWSFrame appends a and b, concatenated, to pending as one frame
// whose first byte (FIN bit and opcode) is first.
func (c *Conn) appendWSFrame(first byte, a, b []byte) {
	n := len(a) + len(b)
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
	var key [4]byte
	if c.mask {
		buf[lenByte] |= maskBit
		binary.LittleEndian.PutUint32(key[:], rand.Uint32())
		buf = append(buf, key[:]...)
	}
	start := len(buf)
	buf = append(append(buf, a...), b...)
	if c.mask {
		maskBytes(key, buf[start:])
	}
	*c.pending = buf
}

// reserve makes room in pending for n more bytes. A session's small
// frames (a pong, a window update, a short answer) take a small buffer,
// which moves to a large one only when data comes: an idle session, whose
// only frames are answers to its client's pings, should not hold a 64 KiB
// buffer each time it writes.
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

// startFlusher starts the flusher if frames wait and none runs. The caller
// holds writeMu.
func (c *Conn) startFlusher() {
	if c.pending != nil && !c.flushing {
		c.flushing = true
		go c.flush()
	}
}

// flush writes pending frames until none are left, then ends.
func (c *Conn) flush() {
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

// frameBuffers and smallBuffers hold the frames waiting for a flusher:
// large ones for data, small ones for a few control frames.
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

// maskBytes XORs b with the repeated key (RFC 6455, section 5.3), eight
// bytes at a time.
func maskBytes(key [4]byte, b []byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= key[i&3]
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
	if first && f != nil {
		go f()
	}
	if c.watch != nil {
		c.watch.stop()
	}
	if first && c.budget != nil {
		c.trackMu.Lock()
		streams := c.tracked
		c.tracked = nil
		c.trackMu.Unlock()
		for _, st := range streams {
			c.budget.remove(st)
		}
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
