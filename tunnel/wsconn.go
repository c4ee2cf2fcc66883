package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is a net.Conn over a WebSocket: the binary messages, read in order,
// form its byte stream (see the package documentation).
//
// Reads use NextReader so a message is never buffered whole. Each Write is
// sent as one binary message, split at MaxMessageSize, with one exception:
// yamux writes a data frame as two calls, its 12-byte header and then its
// body, and Conn sends the two as one message. That halves the messages
// and system calls per frame. One goroutine may read while another writes.
type Conn struct {
	ws *websocket.Conn

	// reader is the message being read; only Read touches it.
	reader io.Reader
	// idle, when positive, is how long Read waits for the next message.
	idle time.Duration

	// writeMu serialises writers (gorilla allows one at a time) and guards
	// header.
	writeMu sync.Mutex
	// header is a yamux data frame header held back until its body comes;
	// headerLen is 0 when none is held.
	header    [yamuxHeaderSize]byte
	headerLen int
}

// yamux frame header layout (yamux spec.md): version, type, flags (2),
// stream ID (4), length (4).
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

// NewConn adapts ws. It sets ws's read limit to MaxMessageSize.
func NewConn(ws *websocket.Conn) *Conn {
	ws.SetReadLimit(MaxMessageSize)
	return &Conn{ws: ws}
}

// SetIdleTimeout makes Read fail once no message has begun for d. The
// server's side of a session uses it instead of sending pings of its own:
// the client pings every KeepAliveInterval, so silence means it is gone.
func (c *Conn) SetIdleTimeout(d time.Duration) { c.idle = d }

// WriteBufferSize is the size of WebSocket write buffers: a frame of
// typical size (a 32 KiB copy buffer and its header) goes out as one
// WebSocket frame in one system call, including on the client, which must
// mask what it sends and so copies it into this buffer.
const WriteBufferSize = 64 << 10

// WriteBufferPool is shared by every WebSocket of the process, so an idle
// session holds no write buffer. All its buffers are WriteBufferSize.
var WriteBufferPool websocket.BufferPool = new(sync.Pool)

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

// readError maps a normal WebSocket close to io.EOF.
func readError(err error) error {
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
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
			return len(p), c.writeJoined(header, p)
		}
		// Not the body announced: send the header on its own.
		if err := c.ws.WriteMessage(websocket.BinaryMessage, header); err != nil {
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
		if err := c.ws.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
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

// writeJoined sends a yamux header and its body as one message.
func (c *Conn) writeJoined(header, body []byte) error {
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.Close()
}

// Close closes the underlying connection without a closing handshake: yamux
// has already said goodbye when it closes its transport.
func (c *Conn) Close() error {
	err := c.ws.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (c *Conn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

func (c *Conn) SetDeadline(t time.Time) error {
	return c.ws.NetConn().SetDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.ws.SetReadDeadline(t)
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	return c.ws.SetWriteDeadline(t)
}

var _ net.Conn = (*Conn)(nil)
