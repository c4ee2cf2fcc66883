package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func TestOneFamilyKeepsIPv4WhenANameHasBoth(t *testing.T) {
	for _, tt := range []struct{ in, want []string }{
		{[]string{"192.0.2.1", "2001:db8::1"}, []string{"192.0.2.1"}},
		{[]string{"2001:db8::1", "2001:db8::2"}, []string{"2001:db8::1", "2001:db8::2"}},
		{[]string{"192.0.2.1", "192.0.2.2", "2001:db8::1"}, []string{"192.0.2.1", "192.0.2.2"}},
		{[]string{"not-an-ip"}, nil},
	} {
		if got := oneFamily(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("oneFamily(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestTrustPeerKeepsTheTokenWhereTheOperatorPointedIt(t *testing.T) {
	for _, tt := range []struct {
		from, peer string
		allowed    []string
		ok         bool
	}{
		{"wss://tunnel.example.com/connect", "wss://tunnel-2.example.com", nil, true},
		{"wss://tunnel.example.com/connect", "wss://b.tunnel.example.com/connect", nil, true},
		{"wss://example.com/connect", "wss://b.example.com", nil, true},
		{"wss://tunnel.example.com/connect", "ws://tunnel-2.example.com", nil, false}, // a plaintext downgrade
		{"ws://tunnel.example.com/connect", "wss://tunnel-2.example.com", nil, true},  // an upgrade
		{"wss://tunnel.example.com/connect", "wss://tunnel.example.org", nil, false},  // another domain
		{"wss://tunnel.example.com/connect", "wss://example.com", nil, false},         // the parent itself
		{"wss://tunnel.example.com/connect", "wss://tunnel.example.org", []string{"tunnel.example.org"}, true},
		{"wss://tunnel.example.com/connect", "wss://a.other.net", []string{"*.other.net"}, true},
		{"ws://127.0.0.1:8123/connect", "ws://127.0.0.1:8124", nil, true},  // the same address
		{"ws://127.0.0.1:8123/connect", "ws://127.0.0.2:8123", nil, false}, // another address
		{"ws://127.0.0.1:8123/connect", "ws://127.0.0.2:8123", []string{"127.0.0.2"}, true},
		{"ws://127.0.0.1:8123/connect", "ws://127.0.0.1:9/internal/admin/reboot?confirm=yes", nil, false},
		{"ws://127.0.0.1:8123/connect", "ws://127.0.0.1:9/x#frag", nil, false},
		{"ws://127.0.0.1:8123/connect", "ws://user:pass@127.0.0.1:9", nil, false},
		{"ws://127.0.0.1:8123/connect", "http://127.0.0.1:9", nil, false},
		{"wss://tunnel.example.com/connect", "wss://evil.com?.example.com", nil, false},
		{"wss://tunnel.example.com/connect", "wss://evilexample.com", nil, false},
		{"wss://me.duckdns.org/connect", "wss://attacker.duckdns.org", nil, false}, // a public suffix is no one's domain
		{"wss://me.github.io/connect", "wss://b.me.github.io", nil, true},
		{"wss://tunnel.acme.co.uk/connect", "wss://tunnel-2.acme.co.uk", nil, true},
		{"wss://acme.co.uk/connect", "wss://other.co.uk", nil, false},
	} {
		got, err := trustPeer(tt.from, tt.peer, tt.allowed)
		if (err == nil) != tt.ok {
			t.Errorf("trustPeer(%s, %s, %v) = %q, %v; want ok %v", tt.from, tt.peer, tt.allowed, got, err, tt.ok)
		}
	}
}

// fakeServer is a tunnel server of the tunnel package's pieces that
// accepts every client and advertises peers; it counts the connections
// it gets.
type fakeServer struct {
	*httptest.Server
	url   string
	hits  atomic.Int64
	peers []string
	// then, if set, is sent after the accept (and peers), and the
	// session ended.
	then atomic.Pointer[tunnel.Message]

	mu       sync.Mutex
	sessions []*tunnel.Session
}

func newFakeServer(t *testing.T, addr string, peers ...string) *fakeServer {
	t.Helper()
	f := &fakeServer{peers: peers}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		sess, err := tunnel.ServerSession(tunnel.NewConn(ws, tunnel.ServerSide), tunnel.Config{})
		if err != nil {
			return
		}
		defer sess.Close()
		f.mu.Lock()
		f.sessions = append(f.sessions, sess)
		f.mu.Unlock()
		ctrl, _, protocol, err := tunnel.ReadHello(sess)
		if err != nil {
			return
		}
		if tunnel.AcceptClient(ctrl, "fake", protocol) != nil {
			return
		}
		if len(f.peers) > 0 {
			tunnel.WriteFrame(ctrl, tunnel.Message{Type: tunnel.TypePeers, Peers: f.peers})
		}
		if msg := f.then.Load(); msg != nil {
			tunnel.WriteFrame(ctrl, *msg)
			return
		}
		select {
		case <-sess.Done():
		case <-r.Context().Done():
		}
	}))
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		f.Listener.Close()
		f.Listener = ln
	}
	f.Start()
	t.Cleanup(f.close)
	f.url = "ws" + strings.TrimPrefix(f.URL, "http") + tunnel.ConnectPath
	return f
}

// close stops the server, and ends its sessions (hijacked connections,
// which httptest does not close).
func (f *fakeServer) close() {
	f.mu.Lock()
	for _, s := range f.sessions {
		s.Close()
	}
	f.mu.Unlock()
	f.Close()
}

// runFakeClient runs a client of urls until the test's end, and returns
// its log.
func runFakeClient(t *testing.T, cfg Config) (*Client, func() string) {
	t.Helper()
	logger, logged := testenvLogger()
	cfg.Token, cfg.Logger, cfg.MinBackoff, cfg.MaxBackoff = "fake-token", logger, 20*time.Millisecond, 100*time.Millisecond
	cfg.HTTP = []tunnel.HTTPUpstream{{Host: "fake.example.com", URL: "http://127.0.0.1:9"}}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c, logged
}

// waitFor polls cond for 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
	}
}

// A server advertises peers: the client connects to the one it may
// trust, and to none of the others, each logged once with its reason;
// the trusted peer's own peers are not followed.
func TestAdvertisedPeersAreTrustedByRuleNotTransitively(t *testing.T) {
	evilSameAddress := newFakeServer(t, "")
	evilElsewhere := newFakeServer(t, "127.0.0.2:0")
	legit := newFakeServer(t, "", evilSameAddress.url) // advertises on: not followed
	advertiser := newFakeServer(t, "",
		legit.url,
		evilElsewhere.url, // another address
		evilSameAddress.url+"/internal/admin/reboot?confirm=yes",
		strings.Replace(evilSameAddress.url, "ws://", "ws://user:pw@", 1),
	)
	_, logged := runFakeClient(t, Config{URL: advertiser.url})
	waitFor(t, "the trusted peer gets a session", func() bool { return legit.hits.Load() > 0 })
	waitFor(t, "the refusals are logged", func() bool {
		return strings.Count(logged(), "does not trust with its token") == 3 && strings.Contains(logged(), "advertised peers of its own")
	})
	for _, want := range []string{"is not under 127.0.0.1's domain", "it has a query or a fragment", "it carries a user name or password"} {
		if !strings.Contains(logged(), want) {
			t.Errorf("no refusal saying %q in:\n%s", want, logged())
		}
	}
	if n := evilSameAddress.hits.Load() + evilElsewhere.hits.Load(); n != 0 {
		t.Fatalf("%d connections (with the token) to peers the client may not trust", n)
	}
}

// wss:// advertises ws://: the token would go in plaintext; refused.
func TestAWSSServerCannotDowngradeAPeerToPlaintext(t *testing.T) {
	evil := newFakeServer(t, "")
	advertiser := httptest.NewUnstartedServer(newFakeServer(t, "", evil.url).Config.Handler)
	advertiser.StartTLS()
	t.Cleanup(advertiser.Close)
	roots := x509.NewCertPool()
	roots.AddCert(advertiser.Certificate())
	_, logged := runFakeClient(t, Config{URL: "wss" + strings.TrimPrefix(advertiser.URL, "https"), TLS: &tls.Config{RootCAs: roots}})
	waitFor(t, "the downgrade is refused", func() bool { return strings.Contains(logged(), "the token would travel in plaintext") })
	if n := evil.hits.Load(); n != 0 {
		t.Fatalf("%d plaintext connections to the advertised peer", n)
	}
}

// A server that answered for the client's URL once and advertised a peer
// is replaced by one that advertises none: the peer's session ends once
// the grace is over.
func TestAPeerGoesWhenItsAdvertiserNoLongerAdvertisesIt(t *testing.T) {
	defer func(g time.Duration) { peersGrace = g }(peersGrace)
	peersGrace = 300 * time.Millisecond
	peer := newFakeServer(t, "")
	injector := newFakeServer(t, "", peer.url)
	addr := injector.Listener.Addr().String()
	c, logged := runFakeClient(t, Config{URL: injector.url})
	waitFor(t, "the injected peer gets a session", func() bool { return peer.hits.Load() > 0 })

	injector.close()
	newFakeServer(t, addr) // the real server takes its address back: no peers
	waitFor(t, "the injected peer is forgotten", func() bool {
		for s := range c.Servers() {
			if strings.HasPrefix(s, peer.url) {
				return false
			}
		}
		return strings.Contains(logged(), "the peers a server advertised are forgotten")
	})
}

func TestAClientTheServerDisconnectsIsToldWhy(t *testing.T) {
	srv := newFakeServer(t, "")
	srv.then.Store(&tunnel.Message{Type: tunnel.TypeReject, Code: tunnel.RejectTokenRefused, Retry: tunnel.RetryNever,
		Reason: "the token of tunnel acme was replaced or has expired"})
	_, logged := runFakeClient(t, Config{URL: srv.url})
	const want = `error="server disconnected the tunnel: the token of tunnel acme was replaced or has expired" code=token-refused`
	waitFor(t, "the client says why it was disconnected", func() bool { return strings.Contains(logged(), want) })
	// Once per session the server ended, not more.
	hits := srv.hits.Load()
	if n := strings.Count(logged(), "server refuses this client"); int64(n) > hits {
		t.Errorf("the client said %d times that the server refuses it, in %d sessions:\n%s", n, hits, logged())
	}
}
