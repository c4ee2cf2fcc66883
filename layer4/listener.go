package layer4

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// portListener accepts the visitors of one port. The App that opened it
// owns its accept loop and stops it with close; each accepted connection
// then belongs to the client session it is forwarded through.
type portListener struct {
	port     int
	ln       net.Listener
	fwd      forwarding
	balancer balancer
	logger   *zap.Logger

	closeOnce sync.Once
	// done is closed by close; exited when the accept loop has returned.
	done, exited chan struct{}
}

// listen binds port on the bind address and starts its accept loop.
// Caddy's listener makes the socket SO_REUSEPORT, so the next config can
// bind the same port while this one still holds it: a reload never leaves
// the port closed.
func (a *App) listen(port int) (*portListener, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(a.Bind, "["), "]")
	na := caddy.NetworkAddress{Network: "tcp", Host: host, StartPort: uint(port), EndPort: uint(port)}
	ln, err := na.Listen(a.ctx, 0, net.ListenConfig{})
	if err != nil {
		return nil, listenError(port, a.Bind, err)
	}
	l := &portListener{
		port:     port,
		ln:       ln.(net.Listener),
		fwd:      a.fwd,
		balancer: balancer{leastConn: a.fwd.leastConn},
		logger:   a.logger.With(zap.Int("port", port)),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	go l.acceptLoop()
	l.logger.Info("listening", zap.String("address", l.ln.Addr().String()))
	return l, nil
}

// listenError says which port failed where, and what to do about it: the
// client prints it.
func listenError(port int, bind string, err error) error {
	where := bind
	if where == "" {
		where = "every interface"
	}
	var hint string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "; another program on the server uses this port: announce another port, or free this one"
	case errors.Is(err, syscall.EACCES):
		hint = "; ports below 1024 need Caddy to run as root or with CAP_NET_BIND_SERVICE"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = "; the server's inlets tcp bind address is not one of its own"
	}
	return fmt.Errorf("port %d cannot be opened on %s: %v%s", port, where, err, hint)
}

// acceptLoop accepts visitors until close.
func (l *portListener) acceptLoop() {
	defer close(l.exited)
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, for example: wait and go on, as
			// net/http's server does, rather than give up the port.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.logger.Warn("accepting a connection", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-l.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		go l.serve(conn)
	}
}

// close stops accepting and waits for the accept loop to return.
// Connections already accepted go on.
func (l *portListener) close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.ln.Close()
		l.logger.Info("stopped listening")
	})
	<-l.exited
}
