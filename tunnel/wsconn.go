package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is a net.Conn over a WebSocket: the binary messages, read in order,
// form its byte stream (see the package documentation).
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
// Conn must be the only writer: NewConn silences gorilla's ping and close
// handlers, the only ones that write on their own (a peer's protocol
// error, which makes gorilla write a close frame, ends the session anyway).
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

	// reader is the message being read; only Read touches it.
	reader io.Reader
	// idle, when positive, is how long Read waits for the next message.
	idle time.Duration

	// writeMu serialises writers and guards what follows.
	writeMu sync.Mutex
	// header is a yamux data frame header held back until its body comes;
	// headerLen is 0 when none is held.
	header    [yamuxHeaderSize]byte
	headerLen int
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

// yamux frame header layout (yamux spec.md): version, type, flags (2),
// stream ID (4), length (4).
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

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
	ws.SetPingHandler(func(string) error { return nil })
	ws.SetCloseHandler(func(int, string) error { return nil })
	c := &Conn{ws: ws, nc: ws.NetConn(), mask: client}
	c.flushed.L = &c.writeMu
	return c
}

// SetIdleTimeout makes Read fail once no message has begun for d. The
// server's side of a session uses it instead of sending pings of its own:
// the client pings every KeepAliveInterval, so silence means it is gone.
func (c *Conn) SetIdleTimeout(d time.Duration) { c.idle = d }

// Read reads from the current message, moving on to the next one at its end.
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

// Write queues p as one or more binary messages.
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
	if c.headerLen > 0 {
		header := c.header[:c.headerLen]
		c.headerLen = 0
		if bodyLen(header) == len(p) && yamuxHeaderSize+len(p) <= MaxMessageSize {
			c.appendFrame(header, p)
			return len(p), nil
		}
		// Not the body announced: send the header on its own.
		c.appendFrame(header, nil)
	}
	if bodyLen(p) > 0 {
		c.headerLen = copy(c.header[:], p)
		return len(p), nil
	}
	for rest := p; len(rest) > 0; {
		chunk := rest[:min(len(rest), MaxMessageSize)]
		c.appendFrame(chunk, nil)
		rest = rest[len(chunk):]
	}
	return len(p), nil
}

// bodyLen returns the body length that p announces if p is exactly a yamux
// data frame header, or 0.
func bodyLen(p []byte) int {
	if len(p) != yamuxHeaderSize || p[0] != 0 || p[1] != yamuxTypeData {
		return 0
	}
	return int(binary.BigEndian.Uint32(p[8:12]))
}

// appendFrame appends a and b, concatenated, to pending as one final binary
// frame. The caller holds writeMu.
func (c *Conn) appendFrame(a, b []byte) {
	if c.pending == nil {
		c.pending = frameBuffers.Get().(*[]byte)
	}
	n := len(a) + len(b)
	buf := append(*c.pending, finalBinaryFrame, 0)
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
		*buf = (*buf)[:0]
		frameBuffers.Put(buf)
		c.writeMu.Lock()
		if err != nil && c.werr == nil {
			c.werr = err
		}
	}
	if c.pending != nil {
		*c.pending = (*c.pending)[:0]
		frameBuffers.Put(c.pending)
		c.pending = nil
	}
	c.flushing = false
	c.flushed.Broadcast()
}

// frameBuffers hold the frames waiting for a flusher.
var frameBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 64<<10)
	return &b
}}

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
