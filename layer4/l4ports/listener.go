package l4ports

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// portListener accepts the visitors of one port. The Plane that opened it
// owns its accept loop and stops it with close; each accepted connection
// then belongs to the client session it is forwarded through.
type portListener struct {
	port     int
	ln       net.Listener
	fwd      forwarding
	balancer registry.Balancer
	logger   *zap.Logger

	closeOnce sync.Once
	// done is closed by close; exited when the accept loop has returned.
	done, exited chan struct{}
}

// listen binds port on the bind address and starts its accept loop.
// Caddy's listener makes the socket SO_REUSEPORT, so the next config can
// bind the same port while this one still holds it: a reload never leaves
// the port closed.
//
// SO_REUSEPORT would also let it bind a port that Caddy itself listens on
// (a site, the admin endpoint), splitting that port's connections with a
// tunnel client: so a port this data plane does not hold already is
// first bound without it, which fails if anything listens there.
func (a *Plane) listen(port int) (*portListener, error) {
	if a.reserved[port] != "" {
		return nil, fmt.Errorf("port %d is Caddy's own (%s): a tunnel cannot take it", port, a.reserved[port])
	}
	host := strings.TrimSuffix(strings.TrimPrefix(a.Bind, "["), "]")
	if held.count(port) == 0 {
		probe, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, listenError(port, a.Bind, err)
		}
		probe.Close()
	}
	na := caddy.NetworkAddress{Network: "tcp", Host: host, StartPort: uint(port), EndPort: uint(port)}
	ln, err := na.Listen(a.ctx, 0, net.ListenConfig{})
	if err != nil {
		return nil, listenError(port, a.Bind, err)
	}
	held.add(port, 1)
	l := &portListener{
		port:     port,
		ln:       ln.(net.Listener),
		fwd:      a.fwd,
		balancer: registry.Balancer{LeastConn: a.fwd.leastConn},
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
	where := bindPhrase(bind)
	var hint string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "; another program on the server uses this port (or Caddy itself: a site, its admin endpoint): announce another port, or free this one"
	case errors.Is(err, syscall.EACCES):
		hint = "; ports below 1024 need Caddy to run as root or with CAP_NET_BIND_SERVICE"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = "; the server's inlets tcp bind address is not one of its own"
	}
	return fmt.Errorf("port %d cannot be opened on %s: %v%s", port, where, err, hint)
}

func bindPhrase(bind string) string {
	if bind == "" {
		return "every interface"
	}
	return bind
}

// held counts, per port, the listeners the TCP data planes of every
// config hold: a port held already is bound again without the probe,
// since the next config binds it while the old one still listens.
var held = portCounts{m: map[int]int{}}

type portCounts struct {
	mu sync.Mutex
	m  map[int]int
}

func (c *portCounts) count(port int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[port]
}

func (c *portCounts) add(port, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[port] += n; c.m[port] <= 0 {
		delete(c.m, port)
	}
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
		held.add(l.port, -1)
		l.logger.Info("stopped listening")
	})
	<-l.exited
}
