package registry

import "errors"

// PortOpener is the TCP data plane: it makes announced ports listen.
type PortOpener interface {
	// OpenPorts makes every port of the session's announcement listen, or
	// returns the reason it cannot (a port outside the allow-list, or one
	// that cannot be bound) and leaves no port of the call open.
	OpenPorts(s *Session) error
}

type portsHolder struct{ PortOpener }

// SetPortOpener installs the TCP data plane; the TCP app calls it when it
// starts.
func (r *Registry) SetPortOpener(p PortOpener) {
	r.ports.Store(&portsHolder{p})
}

// ClearPortOpener uninstalls p if it is still the one installed: the app of
// an old config stops after the new one has started.
func (r *Registry) ClearPortOpener(p PortOpener) {
	cur := r.ports.Load()
	if cur != nil && cur.PortOpener == p {
		r.ports.CompareAndSwap(cur, nil)
	}
}

var errNoTCP = errors.New("this server does not serve TCP tunnels: its Caddyfile needs a global `inlets { tcp { ports ... } }` block")

func (r *Registry) openPorts(s *Session) error {
	p := r.ports.Load()
	if p == nil {
		return errNoTCP
	}
	return p.OpenPorts(s)
}
