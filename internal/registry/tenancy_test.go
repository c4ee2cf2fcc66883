package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func digestHex(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func testTenancy(t *testing.T) *Tenancy {
	t.Helper()
	ten, err := CompileTunnels(map[string]*Tunnel{
		"acme": {Tokens: []Token{{SHA256: digestHex("a")}}, Hosts: []string{"*.acme.example.com", "acme.example.com"}, TCPPorts: []int{2201}},
		"lab":  {Tokens: []Token{{Value: "b"}}, Hosts: []string{"lab.acme.example.com", "*.example.com"}},
		"all":  {Tokens: []Token{{Value: "c"}}, Hosts: []string{"*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ten
}

// The most specific pattern owns a name, whichever tunnel declared it.
func TestTheMostSpecificPatternOwnsAName(t *testing.T) {
	ten := testTenancy(t)
	for host, want := range map[string]string{
		"acme.example.com":       "acme",
		"shop.acme.example.com":  "acme",
		"a.b.acme.example.com":   "acme",
		"lab.acme.example.com":   "lab",
		"x.lab.acme.example.com": "acme",
		"example.com":            "all",
		"www.example.com":        "lab",
		"other.org":              "all",
	} {
		if got := ten.Owner(host); got != want {
			t.Errorf("owner of %s = %q, want %q", host, got, want)
		}
	}
	for pattern, want := range map[string]string{
		"*.acme.example.com":   "acme",
		"*.x.acme.example.com": "acme",
		"*.example.com":        "lab",
		"*":                    "all",
		"lab.acme.example.com": "lab",
	} {
		if got := ten.OwnerOfPattern(pattern); got != want {
			t.Errorf("owner of pattern %s = %q, want %q", pattern, got, want)
		}
	}
}

func TestAnAnnouncementOutsideItsTunnelIsRefusedWithTheReason(t *testing.T) {
	ten := testTenancy(t)
	for _, tt := range []struct {
		tunnel string
		hello  tunnel.Hello
		want   string
	}{
		{"lab", tunnel.Hello{HTTP: []tunnel.HTTPUpstream{{Host: "shop.acme.example.com"}}}, "host shop.acme.example.com is not in tunnel lab's hosts (lab.acme.example.com *.example.com)"},
		{"acme", tunnel.Hello{HTTP: []tunnel.HTTPUpstream{{Host: "lab.acme.example.com"}}}, "not in tunnel acme's hosts"},
		{"acme", tunnel.Hello{HTTP: []tunnel.HTTPUpstream{{Host: "*"}}}, "host * is not in tunnel acme's hosts"},
		{"lab", tunnel.Hello{TCP: []tunnel.TCPUpstream{{Port: 2201}}}, "port 2201 is not in tunnel lab's tcp_ports (none)"},
		{Unnamed, tunnel.Hello{TCP: []tunnel.TCPUpstream{{Port: 2201}}}, "port 2201 belongs to a tunnel of its own"},
		{Unnamed, tunnel.Hello{HTTP: []tunnel.HTTPUpstream{{Host: "acme.example.com"}}}, "host acme.example.com belongs to a tunnel of its own"},
	} {
		err := ten.CheckAnnouncement(tt.tunnel, &tt.hello)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s announcing %+v: %v, want %q", tt.tunnel, tt.hello, err, tt.want)
		}
	}
	ok := tunnel.Hello{HTTP: []tunnel.HTTPUpstream{{Host: "*.acme.example.com"}, {Host: "shop.acme.example.com"}}, TCP: []tunnel.TCPUpstream{{Port: 2201}}}
	if err := ten.CheckAnnouncement("acme", &ok); err != nil {
		t.Errorf("acme announcing its own: %v", err)
	}
}

func TestATokenOpensItsTunnelOnlyUntilItExpires(t *testing.T) {
	soon := time.Now().Add(time.Hour)
	ten, err := CompileTunnels(map[string]*Tunnel{
		"acme": {Tokens: []Token{{Value: "new"}, {SHA256: digestHex("old"), Expires: &soon}}, Hosts: []string{"acme.example.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for token, want := range map[string]bool{"new": true, "old": true, "other": false, "": false} {
		name, ok := ten.Authenticate(sha256.Sum256([]byte(token)), now)
		if ok != want || ok && name != "acme" {
			t.Errorf("token %q: %q, %v; want acme, %v", token, name, ok, want)
		}
	}
	if _, ok := ten.Authenticate(sha256.Sum256([]byte("old")), soon); ok {
		t.Error("the old token is accepted once expired")
	}
	if got := ten.NextExpiry(now); !got.Equal(soon) {
		t.Errorf("next expiry %v, want %v", got, soon)
	}
}

func TestTunnelMistakesNameTheTunnelAndTheFieldAndNeverTheToken(t *testing.T) {
	for name, tt := range map[string]struct {
		tunnels map[string]*Tunnel
		want    string
	}{
		"no token":      {map[string]*Tunnel{"a": {Hosts: []string{"x.com"}}}, "tunnel a: tokens: none given"},
		"two forms":     {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "s3cret", File: "/f"}}, Hosts: []string{"x.com"}}}, "tunnel a: token 1: give exactly one of sha256, value or file"},
		"token as hash": {map[string]*Tunnel{"a": {Tokens: []Token{{SHA256: "s3cret"}}, Hosts: []string{"x.com"}}}, "tunnel a: token 1: sha256 is not a SHA-256 digest"},
		"shared token":  {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "s3cret"}}, Hosts: []string{"x.com"}}, "b": {Tokens: []Token{{Value: "s3cret"}}, Hosts: []string{"y.com"}}}, "tunnel b: token 1: tunnel a has the same token"},
		"same port":     {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "1"}}, TCPPorts: []int{22}}, "b": {Tokens: []Token{{Value: "2"}}, TCPPorts: []int{22}}}, "tunnel b: tcp_ports: tunnel a has port 22 too"},
		"two catchalls": {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "1"}}, Hosts: []string{"*"}}, "b": {Tokens: []Token{{Value: "2"}}, Hosts: []string{"*"}}}, `tunnel b: hosts: tunnel a has "*" too`},
		"bad pattern":   {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "1"}}, Hosts: []string{"a.*.com"}}}, "tunnel a: hosts:"},
		"bad port":      {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "1"}}, TCPPorts: []int{70000}}}, "tunnel a: tcp_ports: 70000 is not a port"},
		"bad name":      {map[string]*Tunnel{"A B": {Tokens: []Token{{Value: "1"}}, Hosts: []string{"x.com"}}}, `tunnel name "A B"`},
		"dots name":     {map[string]*Tunnel{"..": {Tokens: []Token{{Value: "1"}}, Hosts: []string{"x.com"}}}, `tunnel name ".."`},
		"braces":        {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "ab{s3cret}cd"}}, Hosts: []string{"x.com"}}}, "tunnel a: token 1: a placeholder in the token cannot be expanded"},
		"unset env":     {map[string]*Tunnel{"a": {Tokens: []Token{{Value: "{env.INLETS_SURELY_UNSET}"}}, Hosts: []string{"x.com"}}}, "{env.INLETS_SURELY_UNSET}"},
	} {
		_, err := CompileTunnels(tt.tunnels)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the token: %v", name, err)
		}
	}
}

// A handler's own tokens are the default tunnel's: one lookup answers for
// every token, the default tunnel admits what one of its token's handlers
// allows, less what a named tunnel owns, and a token cannot be a handler's
// and a tunnel's at once.
func TestHandlersTokensAreTheDefaultTunnels(t *testing.T) {
	named := func() *Tenancy {
		ten, err := CompileTunnels(map[string]*Tunnel{
			"acme": {Tokens: []Token{{SHA256: digestHex("a")}}, Hosts: []string{"acme.example.com"}},
			"lab":  {Tokens: []Token{{Value: "b"}}, Hosts: []string{"lab.example.com"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return ten
	}
	ten := named()
	if ten.Scope(Unnamed) != nil {
		t.Fatal("a default tunnel before any handler gave a token")
	}
	if err := ten.AddDefaultTokens([][sha256.Size]byte{sha256.Sum256([]byte("b"))}, HostAllow{}); err == nil || !strings.Contains(err.Error(), "tunnel lab's") {
		t.Fatalf("a handler's token that is tunnel lab's: %v", err)
	}
	own := sha256.Sum256([]byte("own"))
	only := func(patterns ...string) HostAllow {
		return HostAllow{Patterns: patterns, Allow: func(h string) bool {
			for _, p := range patterns {
				if p == h {
					return true
				}
			}
			return false
		}}
	}
	// Two handlers hold the token, each with its allow_hosts.
	if err := ten.AddDefaultTokens([][sha256.Size]byte{own}, only("x.test")); err != nil {
		t.Fatal(err)
	}
	if err := ten.AddDefaultTokens([][sha256.Size]byte{own}, only("y.test")); err != nil {
		t.Fatal(err)
	}
	if ten.Scope(Unnamed) == nil || ten.Len() != 2 {
		t.Fatalf("default tunnel %v, named tunnels %d, want it and 2", ten.Scope(Unnamed), ten.Len())
	}
	if name, ok := ten.Authenticate(own, time.Now()); !ok || name != Unnamed {
		t.Fatalf("the handler's token authenticates as %q, %v", name, ok)
	}
	hello := func(hosts ...string) *tunnel.Hello {
		h := &tunnel.Hello{}
		for _, host := range hosts {
			h.HTTP = append(h.HTTP, tunnel.HTTPUpstream{Host: host})
		}
		return h
	}
	now := time.Now()
	for _, tt := range []struct {
		hosts []string
		want  string // "" admitted, else part of the refusal
	}{
		{[]string{"x.test"}, ""},
		{[]string{"y.test"}, ""},
		{[]string{"x.test", "y.test"}, "host y.test is not allowed by this server, which allows x.test"},
		{[]string{"z.test"}, "host z.test is not allowed by this server, which allows x.test"},
	} {
		err := ten.Admits(Unnamed, own, hello(tt.hosts...), now)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("default tunnel announcing %v: %v, want %q", tt.hosts, err, tt.want)
		}
	}
	// A host a named tunnel owns stays the tunnel's, whatever the handler
	// allows.
	all := sha256.Sum256([]byte("all-hosts"))
	if err := ten.AddDefaultTokens([][sha256.Size]byte{all}, HostAllow{}); err != nil {
		t.Fatal(err)
	}
	if err := ten.Admits(Unnamed, all, hello("acme.example.com"), now); err == nil || !strings.Contains(err.Error(), "belongs to a tunnel of its own") {
		t.Errorf("default tunnel announcing tunnel acme's host: %v", err)
	}
	// A token no handler holds any more, and a named tunnel's token
	// presented as the default tunnel's, are refused.
	if err := ten.Admits(Unnamed, sha256.Sum256([]byte("gone")), hello("x.test"), now); err == nil || !strings.Contains(err.Error(), "no longer takes this client's token") {
		t.Errorf("a token no handler holds: %v", err)
	}
	if err := ten.Admits(Unnamed, sha256.Sum256([]byte("b")), hello("x.test"), now); err == nil {
		t.Error("tunnel lab's token admitted as the default tunnel's")
	}
	// Without a handler's token, there is no default tunnel.
	if err := named().Admits(Unnamed, own, hello("x.test"), now); err == nil || !strings.Contains(err.Error(), "no longer takes this client's token") {
		t.Errorf("default tunnel in a config without handlers' tokens: %v", err)
	}
}
