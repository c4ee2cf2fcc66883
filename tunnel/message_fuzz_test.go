package tunnel

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for what the tunnel parses from the wire: the length-prefixed
// JSON frames of the handshake and of every stream, and the host patterns
// and upstream URLs a Hello carries. The seeds are in testdata/fuzz;
// scripts/fuzz.sh runs every target for a while.

// FuzzReadFrame reads arbitrary bytes as each kind of frame. ReadFrame
// must never panic, nor take more than its limit; a frame it accepts must
// survive WriteFrame and ReadFrame again unchanged.
func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Hello
		if fuzzReadFrame(t, data, MaxHandshakeSize, &h) {
			err := h.Validate()
			v, nerr := h.NegotiateProtocol()
			if nerr == nil {
				lo := h.MinProtocol
				if lo == 0 {
					lo = h.Protocol
				}
				if v < MinProtocolVersion || v > ProtocolVersion || v < lo || v > h.Protocol {
					t.Fatalf("NegotiateProtocol() = %d for a client speaking %d to %d; this package speaks %d to %d",
						v, lo, h.Protocol, MinProtocolVersion, ProtocolVersion)
				}
			}
			if err == nil {
				fuzzCheckValidHello(t, &h)
			}
			fuzzRoundTrip(t, &h, &Hello{})
		}

		var sh StreamHeader
		if fuzzReadFrame(t, data, MaxStreamHeaderSize, &sh) {
			fuzzRoundTrip(t, &sh, &StreamHeader{})
		}
		var sr StreamReply
		if fuzzReadFrame(t, data, MaxStreamHeaderSize, &sr) {
			if r := TruncateReason(sr.Reason); len(r) > MaxReasonLen {
				t.Fatalf("TruncateReason left %d bytes", len(r))
			}
			fuzzRoundTrip(t, &sr, &StreamReply{})
		}
		var m Message
		if fuzzReadFrame(t, data, MaxHandshakeSize, &m) {
			fuzzRoundTrip(t, &m, &Message{})
		}
	})
}

// fuzzReadFrame reads data as one frame into v and reports whether it was
// accepted; an accepted frame must have taken its 4-byte prefix and at
// most limit bytes of body.
func fuzzReadFrame(t *testing.T, data []byte, limit int, v any) bool {
	t.Helper()
	r := bytes.NewReader(data)
	if err := ReadFrame(r, limit, v); err != nil {
		return false
	}
	read := len(data) - r.Len()
	if read < 4 || read-4 > limit {
		t.Fatalf("ReadFrame(limit %d) accepted a frame of %d bytes", limit, read-4)
	}
	return true
}

// fuzzRoundTrip writes v, which ReadFrame produced, reads it back into
// fresh, and checks that writing fresh gives the same frame: what one
// side decodes, the other decodes the same.
func fuzzRoundTrip(t *testing.T, v, fresh any) {
	t.Helper()
	var first bytes.Buffer
	if err := WriteFrame(&first, v); err != nil {
		t.Fatalf("WriteFrame of a decoded %T: %v", v, err)
	}
	encoded := bytes.Clone(first.Bytes())
	// JSON escapes may make the frame longer than the one read: no limit
	// but its own length.
	if err := ReadFrame(&first, len(encoded), fresh); err != nil {
		t.Fatalf("ReadFrame of a written %T: %v\nframe: %q", v, err, encoded)
	}
	var second bytes.Buffer
	if err := WriteFrame(&second, fresh); err != nil {
		t.Fatalf("WriteFrame of a re-decoded %T: %v", fresh, err)
	}
	if !bytes.Equal(encoded, second.Bytes()) {
		t.Fatalf("%T changed in a round trip:\nfirst  %q\nsecond %q", v, encoded, second.Bytes())
	}
}

// fuzzCheckValidHello checks what Validate promises of a Hello it accepts.
func fuzzCheckValidHello(t *testing.T, h *Hello) {
	t.Helper()
	if h.ClientID == "" || len(h.ClientID) > MaxClientIDLen || strings.ContainsFunc(h.ClientID, notPrintable) {
		t.Fatalf("Validate accepted client ID %q", h.ClientID)
	}
	switch h.Mode {
	case ModeHTTP:
		if len(h.HTTP) == 0 || len(h.TCP)+len(h.UDP)+len(h.TLS) != 0 {
			t.Fatalf("Validate accepted an http hello with %d hosts and %d ports", len(h.HTTP), len(h.TCP)+len(h.UDP))
		}
		for _, up := range h.HTTP {
			if ValidateHostPattern(up.Host) != nil {
				t.Fatalf("Validate accepted host %q", up.Host)
			}
			if _, err := ParseUpstreamURL(up.URL); err != nil {
				t.Fatalf("Validate accepted upstream %q", up.URL)
			}
		}
	case ModeTCP:
		if len(h.TCP)+len(h.UDP)+len(h.TLS) == 0 || len(h.HTTP) != 0 {
			t.Fatalf("Validate accepted a tcp hello with %d ports and %d hosts", len(h.TCP)+len(h.UDP), len(h.HTTP))
		}
		for _, up := range h.TCP {
			if up.Port < 1 || up.Port > 65535 {
				t.Fatalf("Validate accepted port %d", up.Port)
			}
		}
		for _, up := range h.UDP {
			if up.Port < 1 || up.Port > 65535 {
				t.Fatalf("Validate accepted UDP port %d", up.Port)
			}
		}
		for _, up := range h.TLS {
			if up.Name == "*" || ValidateHostPattern(up.Name) != nil {
				t.Fatalf("Validate accepted TLS name %q", up.Name)
			}
		}
	default:
		t.Fatalf("Validate accepted mode %q", h.Mode)
	}
}

// FuzzValidateHostPattern checks that an accepted pattern is what the
// routing expects: lower case, at most 253 bytes of host characters, and
// unchanged by HostOnly and by a trip through a Hello.
func FuzzValidateHostPattern(f *testing.F) {
	f.Fuzz(func(t *testing.T, p string) {
		if ValidateHostPattern(p) != nil {
			return
		}
		if p == "*" {
			return
		}
		if len(p) > 253 || strings.ToLower(p) != p {
			t.Fatalf("accepted %q: not a lower-case name of at most 253 bytes", p)
		}
		name := strings.TrimPrefix(p, "*.")
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > 63 || strings.ContainsFunc(label, notHostChar) {
				t.Fatalf("accepted %q with label %q", p, label)
			}
		}
		if got := HostOnly(p); got != p {
			t.Fatalf("HostOnly(%q) = %q: a request for the exact host would miss its route", p, got)
		}
		hello := Hello{ClientID: "fuzz", Protocol: ProtocolVersion, Mode: ModeHTTP,
			HTTP: []HTTPUpstream{{Host: p, URL: "http://127.0.0.1:3000"}}}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, hello); err != nil {
			t.Fatal(err)
		}
		var back Hello
		if err := ReadFrame(&buf, MaxHandshakeSize, &back); err != nil {
			t.Fatal(err)
		}
		if len(back.HTTP) != 1 || back.HTTP[0].Host != p {
			t.Fatalf("host %q came back from a frame as %+v", p, back.HTTP)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("a hello announcing accepted host %q is invalid: %v", p, err)
		}
	})
}

// FuzzParseUpstreamURL checks that an accepted upstream is
// http(s)://host[:port][/path] or h2(c)://host[:port], without
// credentials, query or fragment.
func FuzzParseUpstreamURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseUpstreamURL(raw)
		if err != nil {
			if u != nil {
				t.Fatalf("ParseUpstreamURL(%q) returned both %v and an error", raw, u)
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "h2c" && u.Scheme != "h2" {
			t.Fatalf("accepted %q with scheme %q", raw, u.Scheme)
		}
		if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("accepted %q: host %q, user %v, query %q, fragment %q", raw, u.Host, u.User, u.RawQuery, u.Fragment)
		}
		if (u.Scheme == "h2c" || u.Scheme == "h2") && strings.Trim(u.Path, "/") != "" {
			t.Fatalf("accepted %q: an HTTP/2 upstream with a path prefix", raw)
		}
		// What the server displays and the client relays to is accepted
		// again.
		if _, err := ParseUpstreamURL(u.String()); err != nil {
			t.Fatalf("accepted %q, but not its String() %q: %v", raw, u.String(), err)
		}
	})
}

// FuzzHostOnly checks that HostOnly never panics and gives a lower-case
// host without a trailing dot, as the routes are keyed.
func FuzzHostOnly(f *testing.F) {
	f.Fuzz(func(t *testing.T, host string) {
		got := HostOnly(host)
		if strings.ToLower(got) != got {
			t.Fatalf("HostOnly(%q) = %q: not lower case", host, got)
		}
		if strings.HasSuffix(got, ".") {
			t.Fatalf("HostOnly(%q) = %q: trailing dot", host, got)
		}
	})
}

// FuzzTruncateReason checks TruncateReason's bound, and that it cuts on a
// character boundary.
func FuzzTruncateReason(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		got := TruncateReason(s)
		if len(got) > MaxReasonLen {
			t.Fatalf("TruncateReason of %d bytes gave %d bytes", len(s), len(got))
		}
		if len(s) <= MaxReasonLen {
			if got != s {
				t.Fatalf("TruncateReason changed a reason of %d bytes", len(s))
			}
			return
		}
		kept, ok := strings.CutSuffix(got, "...")
		if !ok || !strings.HasPrefix(s, kept) {
			t.Fatalf("TruncateReason of %d bytes gave %q: not a prefix and \"...\"", len(s), got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("TruncateReason cut a character: %q", got)
		}
	})
}
