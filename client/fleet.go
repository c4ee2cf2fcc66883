package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/publicsuffix"

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
	// several is whether the client has other servers than this one,
	// updated as the fleet changes.
	several atomic.Bool
	up      atomic.Bool
	// shutdownAt is when the server last said it was shutting down
	// (Unix nanoseconds, 0: never).
	shutdownAt atomic.Int64
	cancel     context.CancelFunc
	done       chan struct{}
	// sess is the session accepted now, nil between sessions.
	sess atomic.Pointer[tunnel.Session]
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
	if !s.several.Load() {
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
	// warned holds the warnings about peers given once already.
	warned map[string]bool
	// sessionGen counts, per configured URL, the sessions accepted, and
	// peersGen is the one during which its peers were last advertised.
	sessionGen, peersGen map[string]uint64
	// grace is peersGrace, read once when the fleet starts.
	grace time.Duration
}

// runFleet keeps a session to every server until ctx ends: to each URL,
// and when a URL's host is a name, to each address it resolves to, looked
// up again every ResolveInterval. A server that leaves the name loses its
// session; one that joins gets one.
func (c *Client) runFleet(ctx context.Context) error {
	c.fleet.mu.Lock()
	c.fleet.servers = map[string]*server{}
	c.fleet.peers = map[string][]string{}
	c.fleet.sessionGen, c.fleet.peersGen = map[string]uint64{}, map[string]uint64{}
	c.fleet.resync = make(chan struct{}, 1)
	c.fleet.grace = peersGrace
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
		if running := c.fleet.servers[s.key()]; running != nil {
			running.several.Store(len(want) > 1)
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
		s.several.Store(len(want) > 1)
		sctx, cancel := context.WithCancel(ctx)
		s.cancel, s.done = cancel, make(chan struct{})
		c.fleet.servers[s.key()] = s
		if s.several.Load() {
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
// connect to those it has no session to. Only the servers the client was
// given (Config.URL and URLs) are listened to: a peer's own peers are not
// (they would carry the token on, server after server). Each peer must
// pass trustPeer; the others are logged once and dropped; so are any past
// tunnel.MaxPeers.
func (c *Client) advertised(srv *server, peers []string, logger *slog.Logger) {
	if !slices.Contains(c.urls, srv.url) {
		if c.warnOnce("transitive " + srv.url) {
			logger.Warn("a peer server advertised peers of its own; only the servers given with --url may: ignored", "peers", len(peers))
		}
		return
	}
	var valid []string
	for _, p := range peers[:min(len(peers), tunnel.MaxPeers)] {
		u, err := trustPeer(srv.url, p, c.cfg.Peers)
		if err != nil {
			if c.warnOnce("peer " + srv.url + " " + p) {
				logger.Warn("server advertised a peer this client does not trust with its token; ignored", "peer", tunnel.TruncateReason(p), "reason", err)
			}
			continue
		}
		valid = append(valid, u)
	}
	c.setPeers(srv.url, valid, logger)
}

// setPeers makes peers the servers from advertises, and has runFleet
// sync the sessions when that changes anything; nil forgets them.
func (c *Client) setPeers(from string, peers []string, logger *slog.Logger) {
	c.fleet.mu.Lock()
	if peers != nil {
		c.fleet.peersGen[from] = c.fleet.sessionGen[from]
	}
	if slices.Equal(c.fleet.peers[from], peers) {
		c.fleet.mu.Unlock()
		return
	}
	if peers == nil {
		delete(c.fleet.peers, from)
	} else {
		c.fleet.peers[from] = peers
	}
	c.fleet.mu.Unlock()
	if peers != nil {
		logger.Info("server advertises the fleet's other servers", "peers", peers)
	} else {
		logger.Info("the peers a server advertised are forgotten: its session ended, or its next one did not advertise them", "server", from)
	}
	select {
	case c.fleet.resync <- struct{}{}:
	default:
	}
}

// peersGrace is how long the peers a server advertised outlive its
// session: a server that restarts gets its session back within it, and
// one that was answering in its place (a load balancer's other choice, a
// hijacked address) loses what it advertised then, unless the next
// session advertises them again.
var peersGrace = 30 * time.Second

// peersSessionStarted notes a new session to srv, and forgets the peers
// an earlier session advertised if this one does not advertise any
// within peersGrace.
func (c *Client) peersSessionStarted(srv *server, logger *slog.Logger) {
	c.fleet.mu.Lock()
	c.fleet.sessionGen[srv.url]++
	gen, grace := c.fleet.sessionGen[srv.url], c.fleet.grace
	c.fleet.mu.Unlock()
	time.AfterFunc(grace, func() { c.expirePeers(srv.url, gen, false, logger) })
}

// peersSessionEnded forgets, peersGrace from now, the peers srv's session
// advertised, unless a new session has started meanwhile.
func (c *Client) peersSessionEnded(srv *server, logger *slog.Logger) {
	c.fleet.mu.Lock()
	gen, grace := c.fleet.sessionGen[srv.url], c.fleet.grace
	c.fleet.mu.Unlock()
	time.AfterFunc(grace, func() { c.expirePeers(srv.url, gen, true, logger) })
}

// expirePeers forgets the peers url advertised, if the session gen is
// still its latest, and it ended or did not advertise them; not while a
// session to another address of url's name is up (one URL behind a load
// balancer's name is several servers, which advertise alike).
func (c *Client) expirePeers(url string, gen uint64, ended bool, logger *slog.Logger) {
	c.fleet.mu.Lock()
	stale := c.fleet.sessionGen[url] == gen && (ended || c.fleet.peersGen[url] != gen) && c.fleet.peers[url] != nil
	if stale && ended {
		for _, s := range c.fleet.servers {
			if s.url == url && s.up.Load() {
				stale = false
			}
		}
	}
	c.fleet.mu.Unlock()
	if stale {
		c.setPeers(url, nil, logger)
	}
}

// trustPeer checks a peer URL that the server at from advertised, and
// returns it normalized. The rule, so that a client's token goes only
// where its operator pointed it:
//
//   - a ws:// or wss:// URL, with no user, query or fragment;
//   - wss:// when from is wss://: never a plaintext downgrade;
//   - its host one of allowed (Config.Peers: a host name, *.domain, or an
//     IP address), or else under from's: from's host itself, or, for a
//     name of three labels or more, another name of from's parent domain
//     (tunnel.example.com trusts tunnel-2.example.com and
//     b.tunnel.example.com, not example.org); an IP address trusts only
//     itself, on any port.
func trustPeer(from, peer string, allowed []string) (string, error) {
	u, err := parseServerURL(peer)
	if err != nil {
		return "", err
	}
	switch {
	case u.User != nil:
		return "", errors.New("it carries a user name or password")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", errors.New("it has a query or a fragment")
	}
	origin, _ := url.Parse(from)
	if origin.Scheme == "wss" && u.Scheme != "wss" {
		return "", fmt.Errorf("it is %s:// while %s is wss://: the token would travel in plaintext", u.Scheme, origin.Host)
	}
	host := strings.ToLower(u.Hostname())
	if !slices.ContainsFunc(allowed, func(a string) bool { return hostMatches(a, host) }) && !sameDomain(strings.ToLower(origin.Hostname()), host) {
		return "", fmt.Errorf("%s is not under %s's domain: allow it with --peer %s", host, origin.Hostname(), host)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = tunnel.ConnectPath
	}
	return u.String(), nil
}

// sameDomain reports whether host is origin itself or, when origin is a
// name of three labels or more, a name of origin's parent domain, unless
// that parent is a public suffix.
func sameDomain(origin, host string) bool {
	if host == origin {
		return true
	}
	if net.ParseIP(origin) != nil || net.ParseIP(host) != nil {
		return false
	}
	_, parent, ok := strings.Cut(origin, ".")
	if !ok || !strings.Contains(parent, ".") {
		return strings.HasSuffix(host, "."+origin)
	}
	// A parent that is a public suffix (co.uk, github.io, duckdns.org) is
	// no one's domain: its other names are other people's.
	if suffix, _ := publicsuffix.PublicSuffix(parent); suffix == parent {
		return strings.HasSuffix(host, "."+origin)
	}
	return strings.HasSuffix(host, "."+parent)
}

// hostMatches reports whether host is allowed by a --peer pattern: the
// name or address itself, or *.domain for any name under domain (a
// scope's reading of a pattern, tunnel.HostPattern's Covers); never
// "*", which would trust the token to any host.
func hostMatches(pattern, host string) bool {
	pattern = strings.ToLower(pattern)
	return pattern != "*" && tunnel.HostPattern(pattern).Covers(host)
}

// warnOnce reports whether the warning keyed by key has not been given
// yet, and notes that it has.
func (c *Client) warnOnce(key string) bool {
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	if c.fleet.warned == nil {
		c.fleet.warned = map[string]bool{}
	}
	if c.fleet.warned[key] || len(c.fleet.warned) >= maxWarned {
		return false
	}
	c.fleet.warned[key] = true
	return true
}

// maxWarned bounds the warnings remembered, whatever servers advertise.
const maxWarned = 1024

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
