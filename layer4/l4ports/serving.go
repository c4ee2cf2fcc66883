package l4ports

import (
	"errors"
	"slices"
	"sync"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// The data planes that have started and not stopped, oldest first: the
// last one serves. Like the registry, this is the process's, not a
// config's: a reload starts the new config's plane before it stops the
// old one's, and a config that fails to start stops its plane, so that
// the old one serves again.
var serving struct {
	mu     sync.Mutex
	planes []*Plane
}

// install makes p the plane that serves.
func install(p *Plane) {
	serving.mu.Lock()
	defer serving.mu.Unlock()
	serving.planes = append(serving.planes, p)
}

// uninstall removes p, a plane that stops, and reports whether another
// remains to serve.
func uninstall(p *Plane) (remaining bool) {
	serving.mu.Lock()
	defer serving.mu.Unlock()
	serving.planes = slices.DeleteFunc(serving.planes, func(o *Plane) bool { return o == p })
	return len(serving.planes) > 0
}

// current returns the plane that serves now, or nil.
func current() *Plane {
	serving.mu.Lock()
	defer serving.mu.Unlock()
	if len(serving.planes) == 0 {
		return nil
	}
	return serving.planes[len(serving.planes)-1]
}

// errStopped is what a stopped plane's openPorts returns: OpenPorts then
// asks the plane serving now, since a session may have picked the old
// config's plane just before a reload stopped it.
var errStopped = errors.New("the TCP data plane of a replaced config has stopped")

var errNoTCP = tunnel.Reject(tunnel.RejectNoTCP, "this server does not serve TCP tunnels: its Caddyfile needs a global `inlets { tcp { ... } }` block")

// maxOpenAttempts bounds the retries after errStopped; each one means a
// reload happened during the call, so a few is plenty.
const maxOpenAttempts = 5

// OpenPorts has the data plane serving now listen on every port s
// announces, or returns the reason it cannot (no data plane, a port
// outside what the config allows, one that cannot be bound), having left
// none of them open. The registry must have added s already.
func OpenPorts(s *registry.Session) error {
	for range maxOpenAttempts {
		p := current()
		if p == nil {
			return errNoTCP
		}
		if err := p.openPorts(s); !errors.Is(err, errStopped) {
			return err
		}
	}
	return tunnel.Reject(tunnel.RejectShuttingDown, "the server's configuration kept changing while opening the ports; the client will retry")
}
