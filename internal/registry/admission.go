package registry

import (
	"crypto/sha256"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

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
				metrics.ForgetVisitorsTunnel(name)
				r.visitorRates.forgetTunnel(name)
				r.bandwidths.forget(name)
			}
		}
	}
	r.forgetCertificateOrders(t)
	r.bandwidths.apply(t)
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

// admits returns nil if s may be connected under t at now, else the
// rejection to give it: the registry asks when it adds a session (so its
// token and announcement are checked against the tunnels of the moment
// it joins) and, for every connected session, when t becomes the
// server's tunnels.
func (t *Tenancy) admits(s *Session, now time.Time) error {
	return t.Admits(s.Tunnel, s.tokenDigest, &s.Hello, now)
}

// Admits returns nil if a client of tunnel name, with the token of that
// digest, may serve what hello announces at now, else the rejection to
// give it: the tunnel must exist and still hold the token, unexpired; a
// default tunnel's token must have a handler that allows every host and
// TLS name announced; and nothing announced may be another tunnel's.
func (t *Tenancy) Admits(name string, digest [sha256.Size]byte, hello *tunnel.Hello, now time.Time) error {
	if t.Scope(name) == nil {
		if name == Unnamed {
			return tunnel.Reject(tunnel.RejectTokenRefused, "the server no longer takes this client's token: get the current one from its operator")
		}
		return tunnel.Reject(tunnel.RejectTokenRefused, "tunnel %s no longer exists on this server", name)
	}
	tok, ok := t.byDigest[digest]
	if !ok || tok.tunnel != name || !tok.expires.IsZero() && !now.Before(tok.expires) {
		if name == Unnamed {
			return tunnel.Reject(tunnel.RejectTokenRefused, "the server no longer takes this client's token: get the current one from its operator")
		}
		return tunnel.Reject(tunnel.RejectTokenRefused, "the token of tunnel %s was replaced or has expired: get the current one from the server's operator", name)
	}
	if name == Unnamed {
		if err := allowedByOne(tok.allows, hello); err != nil {
			return err
		}
	}
	return t.CheckAnnouncement(name, hello)
}

// allowedByOne returns nil if one of allows allows every host and TLS
// name of hello, else the refusal of the first of them.
func allowedByOne(allows []HostAllow, hello *tunnel.Hello) error {
	var first error
	for _, a := range allows {
		err := a.check(hello)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// check refuses the first host or TLS name of hello that a does not
// allow.
func (a HostAllow) check(hello *tunnel.Hello) error {
	if a.Allow == nil {
		return nil
	}
	for _, up := range hello.HTTP {
		if !a.Allow(up.Host) {
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "host %s is not allowed by this server, which allows %s: announce one of those, or ask its operator to add it to allow_hosts",
				up.Host, strings.Join(a.Patterns, " "))
		}
	}
	for _, up := range hello.TLS {
		if !a.Allow(up.Name) {
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "TLS name %s is not allowed by this server, which allows %s: announce one of those, or ask its operator to add it to allow_hosts",
				up.Name, strings.Join(a.Patterns, " "))
		}
	}
	return nil
}
