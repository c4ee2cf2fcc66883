package client

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// MaxSessions bounds the servers a client keeps a session to: its URLs and
// the addresses their names resolve to. Past it, the addresses a name
// resolves to are taken in the order the resolver gives them.
const MaxSessions = 16

// server is one server of the fleet: a URL, and when its host name
// resolves to several addresses, one of them.
type server struct {
	url  string
	addr string // the address dialled, "" for the URL's own host
	// dialer dials addr, with the URL's host name for TLS and Host.
	dialer *websocket.Dialer
	// several is whether the client has other servers than this one.
	several bool
	up      atomic.Bool
	// shutdownAt is when the server last said it was shutting down
	// (Unix nanoseconds, 0: never).
	shutdownAt atomic.Int64
	cancel     context.CancelFunc
	done       chan struct{}
}

// restartWindow is how long after a server's shutdown message the client
// expects its successor, and backs off at most a second.
const restartWindow = time.Minute

func (s *server) restarting() bool {
	at := s.shutdownAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < restartWindow
}

func (s *server) String() string {
	if s.addr == "" {
		return s.url
	}
	return s.url + " (" + s.addr + ")"
}

// key is what tells two servers apart.
func (s *server) key() string { return s.url + " " + s.addr }

// logger adds, when the client has several servers, which one a line is
// about: its URL, and the address dialled when the URL's name has several.
func (s *server) logger(l *slog.Logger) *slog.Logger {
	if !s.several {
		return l
	}
	if s.addr == "" {
		return l.With("server", s.url)
	}
	return l.With("server", s.url, "address", s.addr)
}

// fleet is the servers a client has sessions to.
type fleet struct {
	mu      sync.Mutex
	servers map[string]*server
	// peers holds, per configured or advertised URL, the peer URLs its
	// server advertised last.
	peers map[string][]string
	// resync wakes runFleet when the advertised peers change.
	resync chan struct{}
}

// runFleet keeps a session to every server until ctx ends: to each URL,
// and when a URL's host is a name, to each address it resolves to, looked
// up again every ResolveInterval. A server that leaves the name loses its
// session; one that joins gets one.
func (c *Client) runFleet(ctx context.Context) error {
	c.fleet.mu.Lock()
	c.fleet.servers = map[string]*server{}
	c.fleet.peers = map[string][]string{}
	c.fleet.resync = make(chan struct{}, 1)
	c.fleet.mu.Unlock()
	defer c.stopServers(nil)
	for {
		c.syncServers(ctx, c.resolve(ctx))
		select {
		case <-ctx.Done():
			return nil
		case <-c.fleet.resync:
		case <-time.After(c.cfg.ResolveInterval):
		}
	}
}

// resolve lists the servers of the URLs now. A name that does not resolve
// is dialled by name, so that the session's own error says why; one that
// resolves to a single address is too.
func (c *Client) resolve(ctx context.Context) []*server {
	var out []*server
	for _, raw := range c.fleetURLs() {
		u, _ := url.Parse(raw)
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "wss" {
				port = "443"
			}
		}
		var addrs []string
		if net.ParseIP(host) == nil {
			rctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
			addrs, _ = c.cfg.LookupHost(rctx, host)
			cancel()
		}
		addrs = oneFamily(addrs)
		if len(addrs) <= 1 {
			out = append(out, &server{url: raw})
			continue
		}
		slices.Sort(addrs)
		for _, a := range addrs {
			out = append(out, &server{url: raw, addr: net.JoinHostPort(a, port)})
		}
	}
	if len(out) > MaxSessions {
		c.logger.Warn("the servers' names resolve to more addresses than a client keeps sessions to; the first ones are kept", "servers", len(out), "max_sessions", MaxSessions)
		out = out[:MaxSessions]
	}
	return out
}

// syncServers starts a session loop for each server of want not running
// yet, and stops those of servers no longer in it.
func (c *Client) syncServers(ctx context.Context, want []*server) {
	keep := map[string]bool{}
	for _, s := range want {
		keep[s.key()] = true
	}
	c.stopServers(keep)
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	for _, s := range want {
		if c.fleet.servers[s.key()] != nil {
			continue
		}
		d := *c.dialer
		if s.addr != "" {
			addr := s.addr
			nd := &net.Dialer{Timeout: c.cfg.DialTimeout}
			d.NetDialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return nd.DialContext(ctx, network, addr)
			}
		}
		s.dialer = &d
		s.several = len(want) > 1
		sctx, cancel := context.WithCancel(ctx)
		s.cancel, s.done = cancel, make(chan struct{})
		c.fleet.servers[s.key()] = s
		if s.several {
			s.logger(c.logger).Info("keeping a session to this server")
		}
		go func() {
			defer close(s.done)
			c.runServer(sctx, s)
		}()
	}
}

// stopServers ends the sessions of the servers not in keep (all, when keep
// is nil) and waits for their loops to return.
func (c *Client) stopServers(keep map[string]bool) {
	c.fleet.mu.Lock()
	var stopped []*server
	for k, s := range c.fleet.servers {
		if keep == nil || !keep[k] {
			s.cancel()
			stopped = append(stopped, s)
			delete(c.fleet.servers, k)
		}
	}
	c.fleet.mu.Unlock()
	for _, s := range stopped {
		<-s.done
		if keep != nil {
			s.logger(c.logger).Info("server left the fleet's name: its session ended", "url", s.url)
		}
	}
}

// Servers lists the servers the client keeps a session to, and whether
// each has accepted one now: URL, with the address dialled when the URL's
// name has several.
func (c *Client) Servers() map[string]bool {
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	out := make(map[string]bool, len(c.fleet.servers))
	for _, s := range c.fleet.servers {
		out[s.String()] = s.up.Load()
	}
	return out
}

// fleetURLs are the URLs given to the client, then the peers its servers
// advertise: the only servers it connects to.
func (c *Client) fleetURLs() []string {
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	urls := slices.Clone(c.urls)
	var from []string
	for u := range c.fleet.peers {
		from = append(from, u)
	}
	slices.Sort(from)
	for _, u := range from {
		for _, p := range c.fleet.peers[u] {
			if !slices.Contains(urls, p) {
				urls = append(urls, p)
			}
		}
	}
	return urls
}

// advertised records the peers a server advertised, and has runFleet
// connect to those it has no session to. A URL that is not a ws:// or
// wss:// URL is ignored; so are any past tunnel.MaxPeers.
func (c *Client) advertised(srv *server, peers []string, logger *slog.Logger) {
	var valid []string
	for _, p := range peers[:min(len(peers), tunnel.MaxPeers)] {
		u, err := parseServerURL(p)
		if err != nil {
			logger.Warn("server advertised a peer URL this client cannot use; ignored", "peer", tunnel.TruncateReason(p), "error", err)
			continue
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = tunnel.ConnectPath
		}
		valid = append(valid, u.String())
	}
	c.fleet.mu.Lock()
	if slices.Equal(c.fleet.peers[srv.url], valid) {
		c.fleet.mu.Unlock()
		return
	}
	c.fleet.peers[srv.url] = valid
	c.fleet.mu.Unlock()
	logger.Info("server advertises the fleet's other servers", "peers", valid)
	select {
	case c.fleet.resync <- struct{}{}:
	default:
	}
}

// oneFamily keeps the IPv4 addresses of a name if it has any, else its
// IPv6 ones: a server with an A and an AAAA record is one server, dialled
// by name (the dialer then tries both), and a fleet's name lists its
// servers in each family.
func oneFamily(addrs []string) []string {
	var v4, v6 []string
	for _, a := range addrs {
		ip := net.ParseIP(a)
		switch {
		case ip == nil:
		case ip.To4() != nil:
			v4 = append(v4, a)
		default:
			v6 = append(v6, a)
		}
	}
	if len(v4) > 0 {
		return v4
	}
	return v6
}
