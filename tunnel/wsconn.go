package tunnel

import (
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
// Reads use NextReader so a message is never buffered whole; each Write is
// sent as one binary message, split at MaxMessageSize. One goroutine may
// read while another writes.
type Conn struct {
	ws *websocket.Conn

	// reader is the message being read; only Read touches it.
	reader io.Reader

	// writeMu serialises writers: gorilla allows one at a time.
	writeMu sync.Mutex
}

// NewConn adapts ws. It sets ws's read limit to MaxMessageSize.
func NewConn(ws *websocket.Conn) *Conn {
	ws.SetReadLimit(MaxMessageSize)
	return &Conn{ws: ws}
}

// WriteBufferPool is shared by every WebSocket of the process, so an idle
// session holds no write buffer.
var WriteBufferPool websocket.BufferPool = new(sync.Pool)

// Read reads from the current message, moving on to the next one at its end.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
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
