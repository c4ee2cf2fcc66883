package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// goodClientFile has every key, both kinds of tunnels and two servers.
const goodClientFile = `# /etc/inlets/client.yaml
url:
  - wss://tunnel-a.example.com
  - wss://tunnel-b.example.com
token-file: token
id: homelab
peer: ["*.example.net", 10.0.0.9]
max-streams: 500
max-unread: 32MiB
insecure-skip-verify: false
upstream-insecure-skip-verify: true
drain-timeout: 30s
http:
  - host: app.example.com
    upstream: http://127.0.0.1:3000
  - host: "*.dev.example.com"
    upstream: https://127.0.0.1:8443/dev
  - upstream: http://127.0.0.1:8080
tcp:
  - upstream: 192.168.0.10
    ports: 2222:22,8000-8001
  - upstream: 192.168.0.11
    ports: [5432, "6000:6001"]
    udp-ports: 51820
    sni: db.example.com=5432
`

// writeFile writes name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestClientFileGivesOneConfigPerMode(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "token", "s3cret\n")
	path := writeFile(t, dir, "client.yaml", goodClientFile)
	f, err := loadClientFile(path)
	if err != nil {
		t.Fatal(err)
	}
	base := client.Config{
		URL: "wss://tunnel-a.example.com", URLs: []string{"wss://tunnel-b.example.com"},
		Token: "s3cret", ID: "homelab", Peers: []string{"*.example.net", "10.0.0.9"},
		MaxStreams: 500, MaxUnread: 32 << 20,
	}
	wantHTTP := base
	wantHTTP.HTTP = []tunnel.HTTPUpstream{
		{Host: "app.example.com", URL: "http://127.0.0.1:3000"},
		{Host: "*.dev.example.com", URL: "https://127.0.0.1:8443/dev"},
		{Host: "*", URL: "http://127.0.0.1:8080"},
	}
	wantL4 := base
	wantL4.TCP = []tunnel.TCPUpstream{
		{Port: 2222, Upstream: "192.168.0.10:22"}, {Port: 8000, Upstream: "192.168.0.10:8000"}, {Port: 8001, Upstream: "192.168.0.10:8001"},
		{Port: 5432, Upstream: "192.168.0.11:5432"}, {Port: 6000, Upstream: "192.168.0.11:6001"},
	}
	wantL4.UDP = []tunnel.UDPUpstream{{Port: 51820, Upstream: "192.168.0.11:51820"}}
	wantL4.SNI = []tunnel.TLSUpstream{{Name: "db.example.com", Upstream: "192.168.0.11:5432"}}

	gotHTTP := *f.configs[tunnel.ModeHTTP]
	if gotHTTP.UpstreamTLS == nil || !gotHTTP.UpstreamTLS.InsecureSkipVerify {
		t.Errorf("upstream-insecure-skip-verify: the HTTP client's UpstreamTLS is %+v", gotHTTP.UpstreamTLS)
	}
	gotHTTP.UpstreamTLS = nil
	if !reflect.DeepEqual(gotHTTP, wantHTTP) {
		t.Errorf("HTTP config:\n got %+v\nwant %+v", gotHTTP, wantHTTP)
	}
	if got := *f.configs[tunnel.ModeTCP]; !reflect.DeepEqual(got, wantL4) {
		t.Errorf("layer-4 config:\n got %+v\nwant %+v", got, wantL4)
	}
	if f.servers != 2 || f.drainTimeout != 30*time.Second || !reflect.DeepEqual(f.watched, []string{filepath.Join(dir, "token")}) {
		t.Errorf("servers %d, drain timeout %v, watched %q", f.servers, f.drainTimeout, f.watched)
	}
	if want := path + ": OK: 3 HTTP hosts, 5 TCP ports, 1 UDP port, 1 TLS name; 2 servers"; f.summary() != want {
		t.Errorf("summary %q, want %q", f.summary(), want)
	}
}

func TestClientFileDefaultsAndOneMode(t *testing.T) {
	t.Setenv("INLETS_TEST_TOKEN", "from-env")
	f, err := parseClientFile("F", []byte("url: ws://127.0.0.1:8123\ntoken-env: INLETS_TEST_TOKEN\ntcp:\n  - upstream: db.lan\n    ports: 5432\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.configs[tunnel.ModeHTTP] != nil || f.drainTimeout != defaultDrainTimeout || f.servers != 1 {
		t.Errorf("configs %v, drain timeout %v, servers %d", f.configs, f.drainTimeout, f.servers)
	}
	cfg := f.configs[tunnel.ModeTCP]
	if cfg.Token != "from-env" || cfg.MaxStreams != 0 || cfg.MaxUnread != 0 || cfg.TLS != nil || cfg.UpstreamTLS != nil || cfg.ID != "" {
		t.Errorf("layer-4 config %+v: want the token of the environment and the client's defaults", cfg)
	}
}

// The CA of tls-ca, relative to the file's directory, is trusted for the
// servers, and for https:// upstreams by the HTTP client only.
func TestClientFileLoadsTheCA(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", string(testCAPEM(t)))
	path := writeFile(t, dir, "client.yaml", "url: wss://x.example.com\ntoken: t\ntls-ca: ca.pem\nhttp: [{host: a.example.com, upstream: https://127.0.0.1}]\ntcp: [{upstream: 127.0.0.1, ports: 22}]\n")
	f, err := loadClientFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, l4 := f.configs[tunnel.ModeHTTP], f.configs[tunnel.ModeTCP]
	if h.TLS == nil || h.TLS.RootCAs == nil || h.UpstreamTLS == nil || !h.TLS.RootCAs.Equal(h.UpstreamTLS.RootCAs) {
		t.Fatalf("HTTP config: TLS %+v, upstream TLS %+v", h.TLS, h.UpstreamTLS)
	}
	if l4.TLS == nil || !l4.TLS.RootCAs.Equal(h.TLS.RootCAs) || l4.UpstreamTLS != nil {
		t.Errorf("layer-4 config: TLS %+v, upstream TLS %+v", l4.TLS, l4.UpstreamTLS)
	}
	if !reflect.DeepEqual(f.watched, []string{filepath.Join(dir, "ca.pem")}) {
		t.Errorf("watched %q", f.watched)
	}
}

// testCAPEM is a self-signed CA certificate, PEM-encoded.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Each mistake is refused with FILE:LINE of the value at fault (FILE: for
// what the whole file lacks), and the fix; the token is never shown.
func TestClientFileMistakesNameTheirLine(t *testing.T) {
	t.Setenv("INLETS_TEST_EMPTY", "")
	const head = "url: ws://127.0.0.1:8123\ntoken: s3cret\n" // lines 1 and 2
	const http = "http:\n  - host: app.example.com\n    upstream: http://127.0.0.1:3000\n"
	for _, tt := range []struct {
		name, file, want string
	}{
		{"unknown key", head + "token_file: x\n" + http, `F:3: unknown key "token_file" at the top level: did you mean "token-file"? The keys are: url, token, token-file`},
		{"unknown key as a flag", "--url: ws://x\n" + http, `F:1: unknown key "--url" at the top level: did you mean "url"?`},
		{"unknown key, prefix", head + "insecure: true\n" + http, `F:3: unknown key "insecure" at the top level: did you mean "insecure-skip-verify"?`},
		{"unknown key, far", head + "colour: blue\n" + http, `F:3: unknown key "colour" at the top level The keys are: url,`},
		{"entry key typo", head + "http:\n  - host: a.example.com\n    upstrem: http://x\n", `F:5: unknown key "upstrem" in an http entry: did you mean "upstream"? The keys are: host, upstream`},
		{"key at the wrong level", head + "ports: 22\n" + http, `F:3: unknown key "ports" at the top level: ports goes in a tcp entry`},
		{"host in a tcp entry", head + "tcp:\n  - host: db.lan\n    ports: 22\n", `F:4: unknown key "host" in a tcp entry: host goes in an http entry; a tcp entry's host is upstream: HOST`},
		{"key twice", head + "url: ws://other\n" + http, "F:3: url is given twice (also at line 1): keep one"},
		{"bad port", head + "tcp:\n  - upstream: db.lan\n    ports: 2222:22,70000\n", "F:5: ports 70000: want PORT, PORT:LOCALPORT or FIRST-LAST, each port between 1 and 65535"},
		{"bad port in a list", head + "tcp:\n  - upstream: db.lan\n    ports:\n      - 22\n      - 22:ssh\n", "F:7: ports 22:ssh: want PORT"},
		{"bad range", head + "tcp:\n  - upstream: db.lan\n    ports: 9000-8000\n", `F:5: ports 9000-8000: "9000-8000" is not a port`},
		{"bad UDP port", head + "tcp:\n  - upstream: db.lan\n    udp-ports: 53:dns\n", "F:5: udp-ports 53:dns: want PORT"},
		{"bad TLS name", head + "tcp:\n  - upstream: db.lan\n    sni: '*'\n", "F:5: sni *: * would take every TLS connection"},
		{"bad server URL", "url: [ws://a.example.com, ftp://b]\ntoken: s3cret\n" + http, "F:1: url ftp://b must start with ws:// or wss://"},
		{"server URL without scheme", "url:\n  - ws://a.example.com\n  - 127.0.0.1:8123\ntoken: s3cret\n" + http, "F:3: url 127.0.0.1:8123 has no scheme: write ws://127.0.0.1:8123"},
		{"too many servers", "url: " + manyURLs(17) + "\ntoken: s3cret\n" + http, "F:1: url: 17 servers; a client keeps at most 16 sessions"},
		{"bad upstream URL", head + "http:\n  - host: app.example.com\n    upstream: 127.0.0.1:3000\n", `F:5: upstream URL "127.0.0.1:3000" must start with http://`},
		{"bad host", head + "http:\n  - host: bad host\n    upstream: http://127.0.0.1\n", `F:4: host "bad host" must be a lower-case name`},
		{"TCP upstream with a port", head + "tcp:\n  - upstream: db.lan:5432\n    ports: 5432\n", "F:4: upstream db.lan:5432: give the host without a port"},
		{"TCP upstream as a URL", head + "tcp:\n  - upstream: tcp://db.lan\n    ports: 5432\n", "F:4: upstream tcp://db.lan: give the host alone, without tcp://"},
		{"two tokens", head + "token-file: /etc/inlets/token\n" + http, "F:3: token-file and token (line 2) are both given: keep one"},
		{"no token", "url: ws://x\n" + http, "F: a token is required: token-file: FILE, token-env: VARIABLE or token: TOKEN"},
		{"token file missing", "url: ws://x\ntoken-file: /nonexistent/token\n" + http, "F:2: token-file: open /nonexistent/token: no such file or directory"},
		{"token env unset", "url: ws://x\ntoken-env: INLETS_TEST_UNSET_VARIABLE\n" + http, "F:2: token-env: the environment variable INLETS_TEST_UNSET_VARIABLE is not set"},
		{"token env empty", "url: ws://x\ntoken-env: INLETS_TEST_EMPTY\n" + http, "F:2: token-env: the environment variable INLETS_TEST_EMPTY is empty"},
		{"CA missing", head + "tls-ca: /nonexistent/ca.pem\n" + http, "F:3: tls-ca: open /nonexistent/ca.pem"},
		{"no url", "token: s3cret\n" + http, "F: url is required: the server, such as url: wss://tunnel.example.com"},
		{"no tunnels", head, "F: no tunnels: give http: entries"},
		{"empty tunnel lists", head + "http:\ntcp: []\n", "F:3: no tunnels: the http: and tcp: lists are empty"},
		{"duplicate host", head + http + "  - host: App.example.com\n    upstream: http://127.0.0.1:3001\n", "F:6: host app.example.com is also at line 4: give each host once"},
		{"duplicate catch-all", head + "http:\n  - upstream: http://127.0.0.1:1\n  - upstream: http://127.0.0.1:2\n", "F:5: host * is also at line 4"},
		{"duplicate port across entries", head + "tcp:\n  - upstream: a.lan\n    ports: 8000-8010\n  - upstream: b.lan\n    ports: [22, 8005]\n", "F:7: port 8005 is also at line 5: give each port once"},
		{"duplicate port on a line", head + "tcp:\n  - upstream: a.lan\n    ports: 22,22\n", "F:5: port 22 is given twice on this line"},
		{"duplicate UDP port", head + "tcp:\n  - upstream: a.lan\n    udp-ports: 53\n  - upstream: b.lan\n    udp-ports: 53\n", "F:7: UDP port 53 is also at line 5"},
		{"duplicate TLS name", head + "tcp:\n  - upstream: a.lan\n    sni: a.example.com\n  - upstream: b.lan\n    sni: a.example.com=8443\n", "F:7: TLS name a.example.com is also at line 5"},
		{"tcp entry without ports", head + "tcp:\n  - upstream: a.lan\n", "F:4: a tcp entry needs ports, udp-ports or sni"},
		{"tcp entry without upstream", head + "tcp:\n  - ports: 22\n", "F:4: a tcp entry needs upstream: HOST"},
		{"http entry without upstream", head + "http:\n  - host: a.example.com\n", "F:4: an http entry needs upstream: URL"},
		{"url of the wrong type", "url: {a: b}\ntoken: s3cret\n" + http, "F:1: url: want a value or a list of values, such as wss://tunnel.example.com, not a mapping"},
		{"list in a list", "url: [[ws://a]]\ntoken: s3cret\n" + http, "F:1: url: want a single value, such as wss://tunnel.example.com, not a list"},
		{"http of the wrong type", head + "http: app.example.com=http://127.0.0.1\n", `F:3: http: want a list of entries, each starting with -, such as - {host: app.example.com, upstream: http://127.0.0.1:3000}; not "app.example.com=http://127.0.0.1"`},
		{"entry of the wrong type", head + "tcp:\n  - 192.168.0.10\n", `F:4: tcp entry: want keys, such as - {upstream: 192.168.0.10, ports: 2222:22}; not "192.168.0.10"`},
		{"number of the wrong type", head + "max-streams: lots\n" + http, `F:3: max-streams: want a whole number, such as 10000, not "lots"`},
		{"too few streams", head + "max-streams: 0\n" + http, "F:3: max-streams 0: want at least 1"},
		{"boolean of the wrong type", head + "insecure-skip-verify: yes\n" + http, `F:3: insecure-skip-verify: want true or false, not "yes"`},
		{"bad size", head + "max-unread: lots\n" + http, `F:3: max-unread "lots": want a size from 1MiB, such as 32MiB`},
		{"bad duration", head + "drain-timeout: forever\n" + http, `F:3: drain-timeout "forever": want a duration such as 1m`},
		{"bad client ID", head + "id: two words\n" + http, `F:3: id: client ID "two words" must be 1 to`},
		{"no value", head + "id:\n" + http, "F:3: id has no value: give one, such as homelab, or remove the line"},
		{"empty list", head + "peer: []\n" + http, "F:3: peer is an empty list"},
		{"tab indentation", "url: ws://x\n\ttoken: s3cret\n", "F:2: YAML: found a tab character that violates indentation: indent with spaces, not tabs"},
		{"syntax error", "url: [ws://a, ws://b\ntoken: s3cret\n", "F:1: YAML: did not find expected ',' or ']'"},
		{"unquoted wildcard", head + "http:\n  - host: *.example.com\n    upstream: http://x\n", `F:4: YAML: did not find expected alphabetic or numeric character: quote a value that starts with *, such as host: "*.example.com"`},
		{"unknown alias", head + "http:\n  - host: *example\n    upstream: http://x\n", `F:4: YAML: unknown anchor 'example' referenced: quote a value that starts with *`},
		{"merge key", head + "base: &b {upstream: a.lan}\ntcp:\n  - <<: *b\n    ports: 22\n", "F:5: an alias (*b): a client file has none"},
		{"two documents", head + http + "---\nurl: ws://y\n", "F:6: a second YAML document (after ---): a config file is one document"},
		{"a list at the top", "- url: ws://x\n", "F:1: want settings as keys, such as url: and http:, got a list"},
		{"empty file", "# nothing yet\n", "F: no settings: a config file gives url:"},
	} {
		_, err := parseClientFile("F", []byte(tt.file))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v\nwant %q", tt.name, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the token: %v", tt.name, err)
		}
	}
}

func manyURLs(n int) string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("ws://s%d.example.com", i)
	}
	return strings.Join(urls, ",")
}

// A file's mistakes are reported together, in the order of their lines,
// what the whole file lacks last, each line a message.
func TestClientFileReportsEveryMistake(t *testing.T) {
	_, err := parseClientFile("F", []byte("http:\n  - host: a.example.com\n    upstream: ftp://x\ntcp:\n  - upstream: a.lan\n    ports: 0\n"))
	want := "F:3: upstream URL \"ftp://x\" must start with http://"
	lines := strings.Split(fmt.Sprint(err), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], want) || !strings.HasPrefix(lines[1], "F:6: ports 0:") ||
		!strings.HasPrefix(lines[2], "F: url is required") || !strings.HasPrefix(lines[3], "F: a token is required") {
		t.Errorf("got\n%v", err)
	}
	var many strings.Builder
	many.WriteString("url: ws://x\ntoken: t\ntcp:\n  - upstream: a.lan\n    ports:\n")
	for range 30 {
		many.WriteString("      - 0\n")
	}
	_, err = parseClientFile("F", []byte(many.String()))
	if lines := strings.Split(fmt.Sprint(err), "\n"); len(lines) != maxFileErrors+1 || lines[maxFileErrors] != "F: and 10 more mistakes" {
		t.Errorf("30 mistakes: %d lines, the last %q", len(lines), lines[len(lines)-1])
	}
}

// An alias is refused (expanded wherever it is used, a few bytes could
// stand for millions of ports); a value that quotes a line break does not
// break the message's line; a file that is not a config file (the token
// file, given by mistake) is not printed.
func TestClientFileAliasesAndOddValues(t *testing.T) {
	_, err := parseClientFile("F", []byte("url: &u ws://127.0.0.1:1\ntoken: t\npeer: *u\ntcp:\n  - {upstream: a.lan, ports: &p 22}\n  - {upstream: b.lan, udp-ports: *p}\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "F:3: an alias (*u)") {
		t.Errorf("aliases: %v", err)
	}
	_, err = parseClientFile("F", []byte("url: ws://x\ntoken: t\ntcp:\n  - upstream: \"a\\nb\"\n    ports: 22\n"))
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.HasPrefix(err.Error(), "F:4: ") {
		t.Errorf("a host with a line break: %q", err)
	}
	_, err = parseClientFile("F", []byte("s3cret-token-0123456789\n"))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("a token file given as the config: %v", err)
	}
}

func TestClientFileTooLarge(t *testing.T) {
	path := writeFile(t, t.TempDir(), "client.yaml", "# "+strings.Repeat("x", maxClientFileSize)+"\n")
	if _, err := loadClientFile(path); err == nil || !strings.Contains(err.Error(), path+": larger than 1024 KiB") {
		t.Errorf("got %v", err)
	}
}

// The example in `inlets client --help` is a good file.
func TestHelpExampleFileIsGood(t *testing.T) {
	_, example, ok := strings.Cut(clientFileHelp.examples, "A config file:\n\n")
	if !ok {
		t.Fatal("the help has no example file")
	}
	var file strings.Builder
	for _, line := range strings.Split(example, "\n") {
		file.WriteString(strings.TrimPrefix(line, "  ") + "\n")
	}
	dir := t.TempDir()
	writeFile(t, dir, "token", "t")
	f, err := loadClientFile(writeFile(t, dir, "client.yaml", file.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, file.String())
	}
	if got := strings.Join(f.counts(), ", "); got != "2 HTTP hosts, 12 TCP ports, 1 UDP port, 1 TLS name" {
		t.Errorf("the example holds %s", got)
	}
}

// `inlets client --check` prints one line and exits 0 for a good file; a
// bad one gets FILE:LINE on stderr and exit status 2.
func TestCheckPrintsTheFileOrItsMistakes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "token", "s3cret\n")
	good := writeFile(t, dir, "good.yaml", goodClientFile)
	bad := writeFile(t, dir, "bad.yaml", "url: ws://x\ntoken-file: token\ntcp:\n  - upstream: a.lan\n    ports: 70000\n")
	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"client", "--config", good, "--check"}, 0, good + ": OK: 3 HTTP hosts, 5 TCP ports, 1 UDP port, 1 TLS name; 2 servers\n", ""},
		{[]string{"client", "--check", "--config", bad}, 2, "", "inlets client: " + bad + ":5: ports 70000: want PORT, PORT:LOCALPORT or FIRST-LAST, each port between 1 and 65535\n"},
		{[]string{"client", "--config", filepath.Join(dir, "none.yaml"), "--check"}, 2, "", "inlets client: " + filepath.Join(dir, "none.yaml") + ": no such file or directory\n"},
		{[]string{"client", "--check"}, 2, "", "inlets client: --config FILE is required (run 'inlets client --help' for the file's format); 'inlets http client' and 'inlets tcp client' run a tunnel from flags alone\n"},
		{[]string{"client", "--config", good, "--url", "ws://x", "--insecure-skip-verify", "--ports", "22"}, 2, "", "inlets client: --url, --insecure-skip-verify, --ports: with --config, the tunnels' settings are in FILE, as url:, insecure-skip-verify:, ports: (its keys are the flags' names); 'inlets http client' and 'inlets tcp client' take flags\n"},
		{[]string{"client", "--config", good, "--bogus"}, 2, "", "inlets client: unknown flag --bogus (run 'inlets client --help' for the flags)\n"},
		{[]string{"http", "client", "--config", good}, 2, "", "inlets http client: --config: a config file runs with 'inlets client --config " + good + "', which runs its HTTP and TCP tunnels together; this command takes flags only\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main("inlets", tt.args, &stdout, &stderr)
		if code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
			t.Errorf("inlets %s: exit %d\nstdout %q\nstderr %q\nwant exit %d\nstdout %q\nstderr %q", strings.Join(tt.args, " "), code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
	// Main is caddy inlets' too; the help shows the flags of the
	// command, not those it refuses.
	var stdout, stderr bytes.Buffer
	if code := Main("caddy inlets", []string{"client", "--help"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "Usage: caddy inlets client --config FILE [--check]") || strings.Contains(stdout.String(), "--url") {
		t.Errorf("caddy inlets client --help: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := Main("inlets", []string{"--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "  client       run the tunnels of a config file") {
		t.Errorf("inlets --help does not list client:\n%s", stdout.String())
	}
}
