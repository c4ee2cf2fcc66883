package cli

import (
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Fuzz targets for the values of a client's --upstream and --ports flags:
// the comma-separated lists (splitList) and what parses their items
// (parseHTTPUpstreams, parseTCPUpstreams), alone and behind the flag
// parsing of runClient.

// fuzzSplitList splits a flag value as runClient does, and checks the
// items: non-empty, trimmed, without a comma.
func fuzzSplitList(t *testing.T, s string) []string {
	t.Helper()
	items := splitList(s)
	for _, item := range items {
		if item == "" || strings.TrimSpace(item) != item || strings.Contains(item, ",") {
			t.Fatalf("splitList(%q) gave the item %q", s, item)
		}
	}
	return items
}

// fuzzCheckHTTP checks what parseHTTPUpstreams promises of the upstreams
// it accepts: one per item, each a host pattern and an upstream URL that
// the server's Validate accepts.
func fuzzCheckHTTP(t *testing.T, items []string) {
	t.Helper()
	ups, err := parseHTTPUpstreams(items)
	if err != nil {
		return
	}
	if len(ups) != len(items) {
		t.Fatalf("parseHTTPUpstreams(%q) gave %d upstreams", items, len(ups))
	}
	for _, up := range ups {
		if err := tunnel.ValidateHostPattern(up.Host); err != nil {
			t.Fatalf("parseHTTPUpstreams(%q) accepted host %q: %v", items, up.Host, err)
		}
		if _, err := tunnel.ParseUpstreamURL(up.URL); err != nil {
			t.Fatalf("parseHTTPUpstreams(%q) accepted URL %q: %v", items, up.URL, err)
		}
	}
}

// fuzzCheckTCP checks what parseTCPUpstreams promises of the upstreams
// it accepts: one per port item (one per port of a FIRST-LAST range),
// each a public port 1 to 65535 relayed to host:LOCAL, LOCAL 1 to 65535.
func fuzzCheckTCP(t *testing.T, hosts, ports []string) {
	t.Helper()
	ups, _, err := parseTCPUpstreams(hosts, ports, nil)
	if err != nil {
		return
	}
	// The same items as UDP ports map alike.
	_, udp, err := parseTCPUpstreams(hosts, nil, ports)
	if err != nil || len(udp) != len(ups) {
		t.Fatalf("parseTCPUpstreams(%q) as UDP ports: %d upstreams, %v; as TCP ports %d", ports, len(udp), err, len(ups))
	}
	for i := range udp {
		if udp[i].Port != ups[i].Port || udp[i].Upstream != ups[i].Upstream {
			t.Fatalf("parseTCPUpstreams(%q): UDP %+v, TCP %+v", ports, udp[i], ups[i])
		}
	}
	// One upstream per PORT[:LOCAL] item, and one per port of a range.
	want := 0
	for _, p := range ports {
		want++
		if first, last, ok := strings.Cut(p, "-"); ok {
			lo, _ := strconv.Atoi(first)
			hi, _ := strconv.Atoi(last)
			want += hi - lo
		}
	}
	if len(hosts) != 1 || len(ups) != want {
		t.Fatalf("parseTCPUpstreams(%q, %q) gave %d upstreams, want %d", hosts, ports, len(ups), want)
	}
	for _, up := range ups {
		if up.Port < 1 || up.Port > 65535 {
			t.Fatalf("parseTCPUpstreams(%q, %q) accepted public port %d", hosts, ports, up.Port)
		}
		i := strings.LastIndexByte(up.Upstream, ':')
		local, err := strconv.Atoi(up.Upstream[i+1:])
		if i < 0 || err != nil || local < 1 || local > 65535 {
			t.Fatalf("parseTCPUpstreams(%q, %q) gave the upstream %q", hosts, ports, up.Upstream)
		}
	}
}

// FuzzParseHTTPUpstreams parses an --upstream value of an http client:
// HOST=URL items, or bare URLs.
func FuzzParseHTTPUpstreams(f *testing.F) {
	f.Fuzz(func(t *testing.T, value string) {
		fuzzCheckHTTP(t, fuzzSplitList(t, value))
	})
}

// FuzzParseTCPUpstreams parses the --upstream and --ports values of a tcp
// client: a host, and PORT[:LOCAL] items.
func FuzzParseTCPUpstreams(f *testing.F) {
	f.Fuzz(func(t *testing.T, upstream, ports string) {
		fuzzCheckTCP(t, fuzzSplitList(t, upstream), fuzzSplitList(t, ports))
	})
}

// FuzzClientFlags parses a client's command line, its arguments the
// fuzzed string split at newlines, with the flags of runClient in either
// mode, and the --upstream and --ports values it gathers. It stops before
// runClient reads the token and CA files the flags name.
func FuzzClientFlags(f *testing.F) {
	f.Fuzz(func(t *testing.T, cmdline string) {
		args := strings.Split(cmdline, "\n")
		for _, mode := range []string{tunnel.ModeHTTP, tunnel.ModeTCP} {
			fs := flag.NewFlagSet("inlets "+mode+" client", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var common clientFlags
			common.register(fs, mode)
			var upstreams, ports []string
			fs.Func("upstream", upstreamHelp(mode), func(s string) error {
				upstreams = append(upstreams, fuzzSplitList(t, s)...)
				return nil
			})
			if mode == tunnel.ModeTCP {
				addPorts := func(s string) error {
					ports = append(ports, fuzzSplitList(t, s)...)
					return nil
				}
				fs.Func("ports", "", addPorts)
				fs.Func("port", "", addPorts)
			}
			code, ok := parseFlags(fs, args, io.Discard, io.Discard)
			if !ok {
				if code != 0 && code != 2 {
					t.Fatalf("parseFlags(%q) exits with %d", args, code)
				}
				continue
			}
			if mode == tunnel.ModeHTTP {
				fuzzCheckHTTP(t, upstreams)
			} else {
				fuzzCheckTCP(t, upstreams, ports)
			}
		}
	})
}
