package tunnel

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := StreamHeader{Kind: KindTCP, Port: 2222, RemoteAddr: "203.0.113.7:51000", LocalAddr: "192.0.2.1:2222", ProxyProtocol: "v2"}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out StreamHeader
	if err := ReadFrame(&buf, MaxStreamHeaderSize, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}

func TestOversizedOrMalformedFrameIsRefused(t *testing.T) {
	var big bytes.Buffer
	binary.Write(&big, binary.BigEndian, uint32(MaxHandshakeSize+1))
	err := ReadFrame(&big, MaxHandshakeSize, new(Hello))
	if err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("oversized frame: %v", err)
	}

	var bad bytes.Buffer
	binary.Write(&bad, binary.BigEndian, uint32(5))
	bad.WriteString("{nope")
	if err := ReadFrame(&bad, MaxHandshakeSize, new(Hello)); err == nil || !strings.Contains(err.Error(), "decoding frame") {
		t.Errorf("malformed frame: %v", err)
	}

	var short bytes.Buffer
	binary.Write(&short, binary.BigEndian, uint32(100))
	short.WriteString("{}")
	if err := ReadFrame(&short, MaxHandshakeSize, new(Hello)); err == nil {
		t.Error("truncated frame accepted")
	}
}

func TestHelloValidate(t *testing.T) {
	ok := func() Hello {
		return Hello{ClientID: "c1", Protocol: ProtocolVersion, Mode: ModeHTTP,
			HTTP: []HTTPUpstream{{Host: "app.example.com", URL: "http://127.0.0.1:3000"}}}
	}
	tests := []struct {
		name   string
		mutate func(*Hello)
		want   string // substring of the error; empty for valid
	}{
		{"valid http", func(*Hello) {}, ""},
		{"valid tcp", func(h *Hello) {
			h.Mode, h.HTTP, h.TCP = ModeTCP, nil, []TCPUpstream{{Port: 2222, Upstream: "127.0.0.1:22"}}
		}, ""},
		{"wildcard and catch-all", func(h *Hello) {
			h.HTTP = append(h.HTTP, HTTPUpstream{Host: "*.example.com", URL: "https://10.0.0.2/api"}, HTTPUpstream{Host: "*", URL: "http://localhost"})
		}, ""},
		{"empty id", func(h *Hello) { h.ClientID = "" }, "client ID"},
		{"id with spaces", func(h *Hello) { h.ClientID = "a b" }, "printable"},
		{"unknown mode", func(h *Hello) { h.Mode = "udp" }, `mode "udp"`},
		{"http without hosts", func(h *Hello) { h.HTTP = nil }, "at least one host"},
		{"duplicate host", func(h *Hello) { h.HTTP = append(h.HTTP, h.HTTP[0]) }, "announced twice"},
		{"upper-case host", func(h *Hello) { h.HTTP[0].Host = "App.example.com" }, "lower-case"},
		{"host with port", func(h *Hello) { h.HTTP[0].Host = "app.example.com:80" }, "lower-case"},
		{"deep wildcard", func(h *Hello) { h.HTTP[0].Host = "*.*.example.com" }, "lower-case"},
		{"ftp upstream", func(h *Hello) { h.HTTP[0].URL = "ftp://x" }, "http://, https://, h2c://"},
		{"upstream with query", func(h *Hello) { h.HTTP[0].URL = "http://x/?a=b" }, "without credentials, query"},
		{"tcp port zero", func(h *Hello) { h.Mode, h.HTTP, h.TCP = ModeTCP, nil, []TCPUpstream{{Port: 0}} }, "between 1 and 65535"},
		{"tcp duplicate port", func(h *Hello) {
			h.Mode, h.HTTP, h.TCP = ModeTCP, nil, []TCPUpstream{{Port: 80, Upstream: "a:80"}, {Port: 80, Upstream: "b:80"}}
		}, "announced twice"},
		{"mixed modes", func(h *Hello) { h.TCP = []TCPUpstream{{Port: 80}} }, "no TCP or UDP ports or TLS names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ok()
			tt.mutate(&h)
			err := h.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"app.example.com":      "app.example.com",
		"App.Example.COM:8443": "app.example.com",
		"app.example.com.":     "app.example.com",
		"127.0.0.1:8123":       "127.0.0.1",
		"[::1]:8123":           "::1",
		"[2001:db8::1]":        "2001:db8::1",
		"":                     "",
		"localhost":            "localhost",
	} {
		if got := HostOnly(in); got != want {
			t.Errorf("HostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// An upstream URL's credentials never reach a message (a client's log,
// the server's rejection reason and its log).
func TestUpstreamURLErrorsHideCredentials(t *testing.T) {
	for _, raw := range []string{"http://user:s3cret@127.0.0.1:3000", "ftp://user:s3cret@x", "http://user:s3cret@[::1/x", "h2c://u:s3cret@h:1/prefix"} {
		_, err := ParseUpstreamURL(raw)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseUpstreamURL(%q): %v", raw, err)
		}
	}
}
