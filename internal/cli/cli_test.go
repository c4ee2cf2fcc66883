package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func TestParseHTTPUpstreams(t *testing.T) {
	got, err := parseHTTPUpstreams(splitList("App.example.com=http://127.0.0.1:3000, grafana.example.com=https://10.0.0.5:3001/grafana ,http://127.0.0.1:8080"))
	if err != nil {
		t.Fatal(err)
	}
	want := []tunnel.HTTPUpstream{
		{Host: "app.example.com", URL: "http://127.0.0.1:3000"},
		{Host: "grafana.example.com", URL: "https://10.0.0.5:3001/grafana"},
		{Host: "*", URL: "http://127.0.0.1:8080"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for in, msg := range map[string]string{
		"":                             "--upstream is required",
		"app.example.com=127.0.0.1:80": "must start with http://",
		"bad host=http://x":            "lower-case name",
	} {
		if _, err := parseHTTPUpstreams(splitList(in)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: got %v, want %q", in, err, msg)
		}
	}
}

func TestParseTCPUpstreams(t *testing.T) {
	got, _, err := parseTCPUpstreams([]string{"192.168.0.10"}, splitList("2222:22,8000"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []tunnel.TCPUpstream{{Port: 2222, Upstream: "192.168.0.10:22"}, {Port: 8000, Upstream: "192.168.0.10:8000"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got, _, _ := parseTCPUpstreams([]string{"::1"}, []string{"5432"}, nil); got[0].Upstream != "[::1]:5432" {
		t.Errorf("IPv6 upstream: %s", got[0].Upstream)
	}
	if got, _, err := parseTCPUpstreams([]string{"10.0.0.2"}, []string{"8000-8002"}, nil); err != nil || len(got) != 3 || got[2] != (tunnel.TCPUpstream{Port: 8002, Upstream: "10.0.0.2:8002"}) {
		t.Errorf("a range of ports: %+v, %v", got, err)
	}
	for _, tt := range []struct {
		hosts, ports []string
		msg          string
	}{
		{nil, []string{"22"}, "one --upstream HOST"},
		{[]string{"h"}, nil, "--ports, --udp-ports or --sni is required"},
		{[]string{"h"}, []string{"70000"}, "between 1 and 65535"},
		{[]string{"h"}, []string{"22:ssh"}, "PORT:LOCALPORT"},
		{[]string{"h"}, []string{"9000-8000"}, `"9000-8000" is not a port (1-65535) or a range FIRST-LAST such as 8000-8100`},
		{[]string{"h"}, []string{"1-5000"}, `"1-5000" is 5000 ports; a range may hold at most 1024`},
		{[]string{"h:22"}, []string{"22"}, "give the host without a port"},
		{[]string{"tcp://h"}, []string{"22"}, "give the host alone, without tcp://"},
	} {
		if _, _, err := parseTCPUpstreams(tt.hosts, tt.ports, nil); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%v %v: got %v, want %q", tt.hosts, tt.ports, err, tt.msg)
		}
	}
}

func TestParseUDPUpstreams(t *testing.T) {
	tcp, udp, err := parseTCPUpstreams([]string{"192.168.0.10"}, nil, splitList("53,51820:51821"))
	if err != nil || len(tcp) != 0 {
		t.Fatalf("--udp-ports alone: %+v, %v", tcp, err)
	}
	want := []tunnel.UDPUpstream{{Port: 53, Upstream: "192.168.0.10:53"}, {Port: 51820, Upstream: "192.168.0.10:51821"}}
	if !reflect.DeepEqual(udp, want) {
		t.Fatalf("got %+v, want %+v", udp, want)
	}
	if _, _, err := parseTCPUpstreams([]string{"h"}, []string{"22"}, []string{"53:dns"}); err == nil || !strings.Contains(err.Error(), "--udp-ports 53:dns: want PORT, PORT:LOCALPORT") {
		t.Errorf("a bad UDP port: %v", err)
	}
}

func TestReadToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte("s3cret\n"), 0o600)
	if tok, err := readToken("", file, ""); err != nil || tok != "s3cret" {
		t.Errorf("token file: %q %v", tok, err)
	}
	if tok, err := readToken("direct", "", ""); err != nil || tok != "direct" {
		t.Errorf("token: %q %v", tok, err)
	}
	t.Setenv("INLETS_TEST_TOKEN", " from-env\n")
	t.Setenv("INLETS_TEST_EMPTY", "")
	if tok, err := readToken("", "", "INLETS_TEST_TOKEN"); err != nil || tok != "from-env" {
		t.Errorf("token env: %q %v", tok, err)
	}
	for _, tt := range []struct{ token, file, env, msg string }{
		{"", "", "", "a token is required"},
		{"a", file, "", "give one of --token, --token-file and --token-env"},
		{"a", "", "INLETS_TEST_TOKEN", "give one of"},
		{"", "/nonexistent", "", "--token-file: open /nonexistent"},
		{"", "", "INLETS_TEST_UNSET", "--token-env: the environment variable INLETS_TEST_UNSET is not set"},
		{"", "", "INLETS_TEST_EMPTY", "--token-env: the environment variable INLETS_TEST_EMPTY is empty"},
	} {
		if _, err := readToken(tt.token, tt.file, tt.env); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("readToken(%q, %q, %q): %v, want %q", tt.token, tt.file, tt.env, err, tt.msg)
		}
	}
}

func TestMainExitCodesAndMessages(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{}, 2, "Usage: inlets <command> [flags]"},
		{[]string{"help"}, 0, "Usage:"},
		{[]string{"version"}, 0, "inlets "},
		{[]string{"http", "client"}, 2, "--url is required"},
		{[]string{"http", "client", "--url", "ws://127.0.0.1:1"}, 2, "a token is required"},
		{[]string{"http", "client", "--url", "http://x", "--token", "t", "--upstream", "http://127.0.0.1"}, 2, "the client speaks WebSocket: write ws://x"},
		{[]string{"http", "client", "--url", "ftp://x", "--token", "t", "--upstream", "http://127.0.0.1"}, 2, "must start with ws:// or wss://"},
		{[]string{"http", "client", "--url", "ws://x", "--token", "t"}, 2, "--upstream is required"},
		{[]string{"http", "client", "--url", "ws://x", "--token-env", "INLETS_TEST_UNSET_VARIABLE", "--upstream", "http://127.0.0.1"}, 2, "--token-env: the environment variable INLETS_TEST_UNSET_VARIABLE is not set"},
		{[]string{"status", "--url", "ws://x", "--token", "t", "--token-env", "HOME"}, 2, "give one of --token, --token-file and --token-env"},
		{[]string{"http", "client", "--bogus"}, 2, "unknown flag --bogus (run 'inlets http client --help' for the flags)"},
		{[]string{"http", "client", "--url"}, 2, "flag --url needs a value"},
		{[]string{"tcp", "client", "--url", "ws://x", "--token", "t", "--upstream", "db.lan", "--ports", "8000-8010", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"tcp", "client", "--url", "ws://x", "--token", "t", "--upstream", "h"}, 2, "--ports, --udp-ports or --sni is required"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main("inlets", tt.args, &stdout, &stderr)
		if code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.out) {
			t.Errorf("inlets %s: exit %d, output %q; want exit %d and %q", strings.Join(tt.args, " "), code, stdout.String()+stderr.String(), tt.code, tt.out)
		}
	}
}

func TestParseSNI(t *testing.T) {
	got, err := parseSNI([]string{"127.0.0.1"}, splitList("*.K8s.example.com,a.test=8443"), nil)
	want := []tunnel.TLSUpstream{{Name: "*.k8s.example.com", Upstream: "127.0.0.1:443"}, {Name: "a.test", Upstream: "127.0.0.1:8443"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	for in, msg := range map[string]string{
		"*":            "* would take every TLS connection",
		"a.test=https": "want NAME or NAME=LOCALPORT",
		"a..test":      "lower-case name",
	} {
		if _, err := parseSNI([]string{"h"}, []string{in}, nil); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("--sni %s: got %v, want %q", in, err, msg)
		}
	}
}
