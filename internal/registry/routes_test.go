package registry

import (
	"sync/atomic"
	"testing"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func session(id uint64, hosts ...string) *Session {
	s := &Session{ID: id, Hello: tunnel.Hello{ClientID: "c", Mode: tunnel.ModeHTTP}}
	for i, h := range hosts {
		s.Hello.HTTP = append(s.Hello.HTTP, tunnel.HTTPUpstream{Host: h, URL: "http://127.0.0.1"})
		s.dials = append(s.dials, DialAddress(id, i))
	}
	s.down = make([]atomic.Int64, len(hosts))
	return s
}

func TestLookupPrefersExactThenWildcardThenCatchAll(t *testing.T) {
	r := New()
	sessions := []*Session{
		session(1, "app.example.com", "*"),
		session(2, "*.example.com"),
		session(3, "app.example.com"),
	}
	for _, s := range sessions {
		r.routes.add(s)
	}
	tests := []struct {
		host  string
		want  []uint64 // sessions, in order
		index int      // announced host index within the first session
	}{
		{"app.example.com", []uint64{1, 3}, 0},
		{"APP.example.com:8123", []uint64{1, 3}, 0},
		{"api.example.com", []uint64{2}, 0},
		{"deep.api.example.com", []uint64{1}, 1},
		{"example.com", []uint64{1}, 1},
		{"other.net", []uint64{1}, 1},
	}
	for _, tt := range tests {
		got := r.Lookup(tt.host)
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %d routes, want %v", tt.host, len(got), tt.want)
			continue
		}
		for i, rt := range got {
			if rt.Session.ID != tt.want[i] {
				t.Errorf("%s: route %d is session %d, want %d", tt.host, i, rt.Session.ID, tt.want[i])
			}
		}
		if got[0].Index != tt.index || got[0].Dial() != DialAddress(tt.want[0], tt.index) {
			t.Errorf("%s: index %d dial %s", tt.host, got[0].Index, got[0].Dial())
		}
	}

	r.routes.remove(sessions[0])
	if got := r.Lookup("app.example.com"); len(got) != 1 || got[0].Session.ID != 3 {
		t.Errorf("after session 1 left: %v", got)
	}
	if got := r.Lookup("other.net"); len(got) != 0 {
		t.Errorf("after the catch-all's session left: %d routes", len(got))
	}
	for _, s := range sessions[1:] {
		r.routes.remove(s)
	}
	if got := r.Lookup("app.example.com"); len(got) != 0 {
		t.Errorf("empty registry routes %d", len(got))
	}
}

func TestDialAddressRoundTrip(t *testing.T) {
	addr := DialAddress(42, 3)
	id, index, ok := ParseDialAddress(addr)
	if !ok || id != 42 || index != 3 {
		t.Fatalf("ParseDialAddress(%q) = %d, %d, %v", addr, id, index, ok)
	}
	for _, bad := range []string{"", "inlets-1:80", "inlets-x-1:80", "other-1-2:80", "inlets-1-2:443", "127.0.0.1:80",
		"inlets-1--1:80", "inlets-1-+1:80", "inlets--1-0:80", "inlets-1-99999999999:80", "inlets-99999999999999999999-0:80"} {
		if _, _, ok := ParseDialAddress(bad); ok {
			t.Errorf("ParseDialAddress(%q) accepted", bad)
		}
	}
}

// The routes are an index of tunnel.HostPattern's Match: a visitor's host
// goes to the clients of the most specific announced pattern that matches
// it (exact, then one-label wildcard, then "*"), and to none when no
// pattern matches.
func TestRoutesAreAnIndexOfHostPatternMatch(t *testing.T) {
	announced := []string{"app.example.com", "*.example.com", "*.shop.example.com", "*.deep.shop.example.com"}
	r := New()
	for i, p := range announced {
		r.routes.add(session(uint64(i+1), p))
	}
	for _, host := range []string{"app.example.com", "x.example.com", "a.shop.example.com", "a.b.shop.example.com",
		"x.deep.shop.example.com", "example.com", "shop.example.com", "other.net", "a.b.c.d.example.com"} {
		want := ""
		for _, p := range announced { // most specific first
			if tunnel.HostPattern(p).Match(host) && (want == "" || len(p) > len(want)) {
				want = p
			}
		}
		got := r.Lookup(host)
		switch {
		case want == "" && len(got) != 0:
			t.Errorf("%s: routed to %s, which no pattern matches", host, got[0].Session.Hello.HTTP[0].Host)
		case want != "" && (len(got) != 1 || got[0].Session.Hello.HTTP[0].Host != want):
			t.Errorf("%s: routes %v, want the clients of %s", host, got, want)
		}
	}
}

// A retired session leaves routing at once, and stays registered and
// counted (max_clients, status, token checks) until it is removed.
func TestRetiredSessionLeavesRoutingButStaysRegistered(t *testing.T) {
	r := New()
	old, next := session(1, "app.example.com"), session(2, "app.example.com")
	for _, s := range []*Session{old, next} {
		if err := r.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	r.Retire(old)
	r.Retire(old) // twice is harmless
	if got := r.Lookup("app.example.com"); len(got) != 1 || got[0].Session != next {
		t.Errorf("routes after retiring session 1: %v", got)
	}
	if r.Len() != 2 || r.Session(1) != old || !old.Retired() {
		t.Errorf("a retired session must stay registered: %d sessions, Session(1) %v", r.Len(), r.Session(1))
	}
	r.Remove(old)
	if r.Len() != 1 || r.Session(1) != nil {
		t.Errorf("after removing it: %d sessions", r.Len())
	}
	if got := r.Lookup("app.example.com"); len(got) != 1 || got[0].Session != next {
		t.Errorf("removing a retired session changed the others' routes: %v", got)
	}
	r.Retire(next)
	if got := r.Lookup("app.example.com"); len(got) != 0 {
		t.Errorf("the host's last session retired, yet routes: %v", got)
	}
}
