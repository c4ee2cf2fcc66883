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
// whole. Writes do not go through gorilla: Conn writes each message as one
// final binary frame itself, with one system call. On the server's side of
// a TCP connection that is a writev of the frame header and the caller's
// bytes, without a copy; a client must mask what it sends, and TLS wants
// one buffer per record, so there the frame is assembled in a pooled
// buffer. For that to be safe Conn must be the only writer: NewConn
// silences gorilla's ping and close handlers, the only ones that write on
// their own (a peer's protocol error, which makes gorilla write a close
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
	// writev is set when nc is a TCP connection, whose writev sends a
	// frame header and its payload in one system call without a copy.
	writev bool

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
	// frame is the WebSocket frame header being written.
	frame [maxFrameHeaderSize]byte
	// bufs is the writev of one frame.
	bufs net.Buffers

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
	nc := ws.NetConn()
	_, isTCP := nc.(*net.TCPConn)
	return &Conn{ws: ws, nc: nc, mask: client, writev: isTCP && !client, bufs: make(net.Buffers, 0, 3)}
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

// Write sends p as one or more binary messages.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.headerLen > 0 {
		header := c.header[:c.headerLen]
		c.headerLen = 0
		if bodyLen(header) == len(p) && yamuxHeaderSize+len(p) <= MaxMessageSize {
			return len(p), c.writeFrame(header, p)
		}
		// Not the body announced: send the header on its own.
		if err := c.writeFrame(header, nil); err != nil {
			return 0, err
		}
	}
	if bodyLen(p) > 0 {
		c.headerLen = copy(c.header[:], p)
		return len(p), nil
	}
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxMessageSize)]
		if err := c.writeFrame(chunk, nil); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// bodyLen returns the body length that p announces if p is exactly a yamux
// data frame header, or 0.
func bodyLen(p []byte) int {
	if len(p) != yamuxHeaderSize || p[0] != 0 || p[1] != yamuxTypeData {
		return 0
	}
	return int(binary.BigEndian.Uint32(p[8:12]))
}

// writeFrame writes a and b, concatenated, as one final binary frame.
func (c *Conn) writeFrame(a, b []byte) error {
	n := len(a) + len(b)
	h := append(c.frame[:0], finalBinaryFrame, 0)
	switch {
	case n <= 125:
		h[1] = byte(n)
	case n <= 0xffff:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	if c.writev {
		c.bufs = append(c.bufs[:0], h, a, b)
		_, err := c.bufs.WriteTo(c.nc)
		return err
	}
	var key [4]byte
	if c.mask {
		h[1] |= maskBit
		binary.LittleEndian.PutUint32(key[:], rand.Uint32())
		h = append(h, key[:]...)
	}
	buf := frameBuffers.Get().(*[]byte)
	defer frameBuffers.Put(buf)
	frame := append(append(append((*buf)[:0], h...), a...), b...)
	if c.mask {
		maskBytes(key, frame[len(h):])
	}
	*buf = frame
	_, err := c.nc.Write(frame)
	return err
}

// frameBuffers hold frames assembled for the client or for TLS.
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
