package registry

import (
	"errors"
	"slices"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// PortOpener is the TCP data plane: it makes announced ports listen.
type PortOpener interface {
	// OpenPorts makes every port of the session's announcement listen, or
	// returns the reason it cannot (a port outside the allow-list, or one
	// that cannot be bound) and leaves no port of the call open. An opener
	// that has stopped returns ErrOpenerStopped.
	OpenPorts(s *Session) error
}

// ErrOpenerStopped is what a stopped PortOpener's OpenPorts returns. The
// registry then asks the opener installed now: a session may have picked
// the old config's opener just before a reload stopped it.
var ErrOpenerStopped = errors.New("the TCP data plane of a replaced config has stopped")

// SetPortOpener installs the TCP data plane; the TCP app calls it when it
// starts. The latest installed opener serves.
func (r *Registry) SetPortOpener(p PortOpener) {
	r.openersMu.Lock()
	defer r.openersMu.Unlock()
	r.openers = append(r.openers, p)
}

// ClearPortOpener uninstalls p, the TCP app of a config that stops, and
// reports whether another opener remains installed. The old config's app
// stops after the new one has started, so the new one keeps serving; when
// a new config fails to start, Caddy stops its apps and the old config
// runs on, so its opener serves again.
func (r *Registry) ClearPortOpener(p PortOpener) (remaining bool) {
	r.openersMu.Lock()
	defer r.openersMu.Unlock()
	r.openers = slices.DeleteFunc(r.openers, func(o PortOpener) bool { return o == p })
	return len(r.openers) > 0
}

// portOpener returns the opener that serves now, or nil.
func (r *Registry) portOpener() PortOpener {
	r.openersMu.Lock()
	defer r.openersMu.Unlock()
	if len(r.openers) == 0 {
		return nil
	}
	return r.openers[len(r.openers)-1]
}

var errNoTCP = tunnel.Reject(tunnel.RejectNoTCP, "this server does not serve TCP tunnels: its Caddyfile needs a global `inlets { tcp { ... } }` block")

// maxOpenAttempts bounds the retries after ErrOpenerStopped; each one
// means a reload happened during the call, so a few is plenty.
const maxOpenAttempts = 5

func (r *Registry) openPorts(s *Session) error {
	for range maxOpenAttempts {
		p := r.portOpener()
		if p == nil {
			return errNoTCP
		}
		if err := p.OpenPorts(s); !errors.Is(err, ErrOpenerStopped) {
			return err
		}
	}
	return tunnel.Reject(tunnel.RejectShuttingDown, "the server's configuration kept changing while opening the ports; the client will retry")
}
