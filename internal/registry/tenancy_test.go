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
