package handler

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Defaults of the control plane's abuse controls.
const (
	// DefaultAuthFailures failed logins from one address are answered;
	// the next ones get 429 until the address has earned another try,
	// one every DefaultAuthFailureWindow / DefaultAuthFailures.
	DefaultAuthFailures      = 10
	DefaultAuthFailureWindow = time.Minute
	// DefaultHandshakesPerAddress is how many clients from one address
	// may be between their upgrade and the server's answer at once.
	DefaultHandshakesPerAddress = 16
)

// maxGuardedAddresses bounds the addresses the guard remembers: 64 bytes
// or so each.
const maxGuardedAddresses = 1 << 16

// guard is what the control plane remembers of the addresses that
// connect to it: their failed logins and their handshakes in progress.
// One guard serves every handler of the process, so a reload does not
// forget an attacker.
type guard struct {
	mu    sync.Mutex
	addrs map[netip.Prefix]*addrState
	// logTokens bounds the log lines about refused logins to about
	// logRate a second, whatever the number of addresses.
	logTokens  float64
	logRefill  time.Time
	suppressed int
}

type addrState struct {
	// tokens is a bucket of failed logins, refilled at the handler's
	// rate up to its burst; refilled is when it was last refilled.
	tokens   float64
	refilled time.Time
	// failures counts the failed logins not logged yet, and logged is
	// when the address was last logged.
	failures int
	logged   time.Time
	limited  bool
	// handshakes counts the sessions of the address in their handshake.
	handshakes int
}

const (
	logBurst = 10
	logRate  = 1.0
	// logEvery is how often one address's failures are logged at most.
	logEvery = time.Minute
)

var controlGuard = &guard{addrs: make(map[netip.Prefix]*addrState)}

// limits is a handler's configuration of the guard.
type guardLimits struct {
	failures   int
	window     time.Duration
	handshakes int
}

// addressOf is the key of a request's client address: the address
// itself for IPv4, its /64 for IPv6, where one host has many. Caddy's
// client IP honours the server's trusted_proxies.
func addressOf(r *http.Request) netip.Prefix {
	raw, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	ip, err := netip.ParseAddr(raw)
	if err != nil {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			ip = ap.Addr()
		}
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// state returns the address's state, refilled; the caller holds mu.
func (g *guard) state(addr netip.Prefix, l guardLimits, now time.Time) *addrState {
	s := g.addrs[addr]
	if s == nil {
		if len(g.addrs) >= maxGuardedAddresses {
			g.evict(l, now)
		}
		s = &addrState{tokens: float64(l.failures), refilled: now}
		g.addrs[addr] = s
		return s
	}
	rate := float64(l.failures) / l.window.Seconds()
	s.tokens = min(float64(l.failures), s.tokens+now.Sub(s.refilled).Seconds()*rate)
	s.refilled = now
	return s
}

// evict forgets the addresses that have nothing to remember: a full
// bucket and no handshake. If that frees nothing, it forgets half of
// them: an attacker with that many addresses is better fought at the
// network's edge than in memory.
func (g *guard) evict(l guardLimits, now time.Time) {
	rate := float64(l.failures) / l.window.Seconds()
	for a, s := range g.addrs {
		if s.handshakes == 0 && s.tokens+now.Sub(s.refilled).Seconds()*rate >= float64(l.failures) {
			delete(g.addrs, a)
		}
	}
	for a, s := range g.addrs {
		if len(g.addrs) < maxGuardedAddresses/2 {
			break
		}
		if s.handshakes == 0 {
			delete(g.addrs, a)
		}
	}
}

// limited reports how long an address must wait before its next login
// is looked at, or 0 if it may try now.
func (g *guard) limited(addr netip.Prefix, l guardLimits) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	s := g.addrs[addr]
	if s == nil {
		return 0
	}
	s = g.state(addr, l, now)
	if s.tokens >= 1 {
		s.limited = false
		return 0
	}
	rate := float64(l.failures) / l.window.Seconds()
	return time.Duration((1 - s.tokens) / rate * float64(time.Second))
}

// failed counts a failed login from addr, and logs it unless the address
// or all addresses have been logged enough lately.
func (g *guard) failed(addr netip.Prefix, r *http.Request, l guardLimits, logger *zap.Logger) {
	g.strike(addr, l, logger, "client refused: missing or wrong token",
		zap.String("remote_addr", r.RemoteAddr), zap.String("path", r.URL.Path))
}

// strike counts a failure of addr's against its bucket (a failed login,
// or a hello the server rejected for the client's own fault), and logs
// msg with fields unless the address or all addresses have been logged
// enough lately: at most once a minute per address, and about once a
// second in all.
func (g *guard) strike(addr netip.Prefix, l guardLimits, logger *zap.Logger, msg string, fields ...zap.Field) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	s := g.state(addr, l, now)
	s.tokens = max(0, s.tokens-1)
	s.failures++
	tripped := s.tokens < 1 && !s.limited
	if tripped {
		s.limited = true
	}
	if !tripped && now.Sub(s.logged) < logEvery {
		return
	}
	if !g.mayLog(now) {
		return
	}
	s.logged = now
	fields = append(fields, zap.Int("failures", s.failures))
	if g.suppressed > 0 {
		fields = append(fields, zap.Int("other_lines_suppressed", g.suppressed))
		g.suppressed = 0
	}
	s.failures = 0
	if tripped {
		logger.Warn("too many failed logins or rejected hellos from one address: answering 429 until it slows down", fields...)
		return
	}
	logger.Info(msg, fields...)
}

func (g *guard) mayLog(now time.Time) bool {
	g.logTokens = min(logBurst, g.logTokens+now.Sub(g.logRefill).Seconds()*logRate)
	g.logRefill = now
	if g.logTokens < 1 {
		g.suppressed++
		return false
	}
	g.logTokens--
	return true
}

// beginHandshake counts a handshake of addr in, unless the address has
// as many as the limit; done counts it out.
func (g *guard) beginHandshake(addr netip.Prefix, l guardLimits) (done func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state(addr, l, time.Now())
	if s.handshakes >= l.handshakes {
		return nil, false
	}
	s.handshakes++
	return func() {
		g.mu.Lock()
		s.handshakes--
		g.mu.Unlock()
	}, true
}

// tooMany answers 429 with the time to wait.
func tooMany(w http.ResponseWriter, wait time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Round(time.Second)/time.Second))))
	http.Error(w, msg, http.StatusTooManyRequests)
}
