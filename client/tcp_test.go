package client

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// headerConn records what is written to it.
type headerConn struct {
	net.Conn
	strings.Builder
}

func (c *headerConn) Write(p []byte) (int, error) { return c.Builder.Write(p) }

func TestProxyHeaderCarriesTheVisitorAndServerAddresses(t *testing.T) {
	for _, tt := range []struct {
		name, version, remote, local string
		wantSrc, wantDst             string
		wantV1                       string
	}{
		{"v1 IPv4", "v1", "203.0.113.7:51234", "192.0.2.1:2222", "203.0.113.7:51234", "192.0.2.1:2222", "PROXY TCP4 203.0.113.7 192.0.2.1 51234 2222\r\n"},
		{"v1 IPv6", "v1", "[2001:db8::7]:51234", "[2001:db8::1]:2222", "[2001:db8::7]:51234", "[2001:db8::1]:2222", "PROXY TCP6 2001:db8::7 2001:db8::1 51234 2222\r\n"},
		{"v1 IPv4 on a dual-stack listener", "v1", "[::ffff:203.0.113.7]:51234", "[::ffff:192.0.2.1]:2222", "203.0.113.7:51234", "192.0.2.1:2222", "PROXY TCP4 203.0.113.7 192.0.2.1 51234 2222\r\n"},
		{"v2 IPv4", "v2", "203.0.113.7:51234", "192.0.2.1:2222", "203.0.113.7:51234", "192.0.2.1:2222", ""},
		{"v2 IPv6", "v2", "[2001:db8::7]:51234", "[2001:db8::1]:2222", "[2001:db8::7]:51234", "[2001:db8::1]:2222", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var w headerConn
			err := writeProxyHeader(&w, tunnel.StreamHeader{Kind: tunnel.KindTCP, ProxyProtocol: tt.version, RemoteAddr: tt.remote, LocalAddr: tt.local})
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantV1 != "" && w.String() != tt.wantV1 {
				t.Errorf("v1 header %q, want %q", w.String(), tt.wantV1)
			}
			h, err := proxyproto.Read(bufio.NewReader(strings.NewReader(w.String())))
			if err != nil {
				t.Fatalf("parsing the header: %v", err)
			}
			if int(h.Version) != int(tt.version[1]-'0') || !h.Command.IsProxy() ||
				h.SourceAddr.String() != tt.wantSrc || h.DestinationAddr.String() != tt.wantDst {
				t.Fatalf("header v%d proxy=%v %s -> %s, want %s %s -> %s", h.Version, h.Command.IsProxy(), h.SourceAddr, h.DestinationAddr, tt.version, tt.wantSrc, tt.wantDst)
			}
		})
	}
}

func TestProxyHeaderRefusesWhatItCannotWrite(t *testing.T) {
	for name, h := range map[string]tunnel.StreamHeader{
		"unknown version": {ProxyProtocol: "v3", RemoteAddr: "203.0.113.7:1", LocalAddr: "192.0.2.1:2"},
		"name, not IP":    {ProxyProtocol: "v1", RemoteAddr: "visitor.example:1", LocalAddr: "192.0.2.1:2"},
		"no port":         {ProxyProtocol: "v2", RemoteAddr: "203.0.113.7:1", LocalAddr: "192.0.2.1"},
	} {
		var w headerConn
		if err := writeProxyHeader(&w, h); err == nil || w.Len() != 0 {
			t.Errorf("%s: wrote %q, err %v; want an error and nothing written", name, w.String(), err)
		}
	}
}
