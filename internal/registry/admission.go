package registry

import (
	"crypto/sha256"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Plane is what a control-plane handler admits with its own tokens: the
// digests of those tokens, and its allow_hosts (nil: any host).
type Plane struct {
	Digests [][sha256.Size]byte
	Allow   func(host string) bool
}

func (p Plane) holds(digest [sha256.Size]byte) bool {
	for _, d := range p.Digests {
		if d == digest {
			return true
		}
	}
	return false
}

// Tenancy returns the tunnels of the config that started last; nil (no
// named tunnel) until one starts.
func (r *Registry) Tenancy() *Tenancy { return r.tenancy.Load() }

// SetTenancy makes t the server's tunnels, as the inlets app of a config
// does when it starts, and disconnects the clients it no longer admits: a
// deleted tunnel's, those whose token it dropped or that has expired, and
// those announcing what their tunnel no longer owns. It is called again
// when the next token expires.
func (r *Registry) SetTenancy(t *Tenancy) {
	r.mu.Lock()
	if old := r.tenancy.Swap(t); old != nil {
		for name := range old.tunnels {
			if t.Scope(name) == nil {
				metrics.ForgetOnDemandTunnel(name)
			}
		}
	}
	r.forgetCertificateOrders(t)
	if r.expiry != nil {
		r.expiry.Stop()
		r.expiry = nil
	}
	now := time.Now()
	if next := t.NextExpiry(now); !next.IsZero() {
		r.expiry = time.AfterFunc(next.Sub(now), func() {
			if r.Tenancy() == t {
				r.SetTenancy(t)
			}
		})
	}
	r.mu.Unlock()
	// Oldest first: a tunnel whose max_clients was lowered keeps its
	// longest-connected clients.
	kept := make(map[string]int)
	for _, s := range r.Sessions() {
		err := t.admits(s, now)
		if sc := t.Scope(s.Tunnel); err == nil && sc != nil && sc.MaxClients > 0 {
			if kept[s.Tunnel] >= sc.MaxClients {
				err = tunnel.Reject(tunnel.RejectServerFull, "tunnel %s now takes at most %d clients (its max_clients), and this one connected last", s.Tunnel, sc.MaxClients)
			} else {
				kept[s.Tunnel]++
			}
		}
		if err != nil {
			r.Logger().Info("disconnecting a client the configuration no longer admits",
				zap.String("tunnel", s.Tunnel), zap.String("client_id", s.Hello.ClientID),
				zap.String("remote_addr", s.RemoteAddr), zap.Error(err))
			var rej *tunnel.Rejection
			if errors.As(err, &rej) {
				// Each in its own goroutine: a client that does not read
				// holds its write for up to ConnectionWriteTimeout, and
				// must not hold up the config's start, nor the others.
				go s.Disconnect(rej)
			} else {
				s.Close()
			}
		}
	}
}

// SetPlanes records the control-plane handlers of the config; its app
// does so when it starts, before the tenancy is the registry's.
func (t *Tenancy) SetPlanes(planes []Plane) {
	t.planes, t.planesSet = planes, true
}

// admits returns nil if s may be connected under t at now, else the
// rejection to give it: the registry asks when it adds a session (its
// token may have been replaced during the handshake) and, for every
// connected session, when t becomes the server's tunnels.
func (t *Tenancy) admits(s *Session, now time.Time) error {
	if s.Tunnel != Unnamed {
		if t.Scope(s.Tunnel) == nil {
			return tunnel.Reject(tunnel.RejectTokenRefused, "tunnel %s no longer exists on this server", s.Tunnel)
		}
		if !t.TokenAccepted(s.Tunnel, s.tokenDigest, now) {
			return tunnel.Reject(tunnel.RejectTokenRefused, "the token of tunnel %s was replaced or has expired: get the current one from the server's operator", s.Tunnel)
		}
	} else if t.planesSet {
		held := false
		for _, p := range t.planes {
			if !p.holds(s.tokenDigest) {
				continue
			}
			held = true
			if p.Allow == nil || allowsAll(p.Allow, &s.Hello) {
				return t.CheckAnnouncement(s.Tunnel, &s.Hello)
			}
		}
		if held {
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "the server no longer allows a host this client announces (its allow_hosts changed)")
		}
		return tunnel.Reject(tunnel.RejectTokenRefused, "the server no longer takes this client's token: get the current one from its operator")
	}
	return t.CheckAnnouncement(s.Tunnel, &s.Hello)
}

func allowsAll(allow func(string) bool, hello *tunnel.Hello) bool {
	for _, up := range hello.HTTP {
		if !allow(up.Host) {
			return false
		}
	}
	for _, up := range hello.TLS {
		if !allow(up.Name) {
			return false
		}
	}
	return true
}
