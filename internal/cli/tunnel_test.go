package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/status"
)

// The command checks a name with the server's own rule (package config):
// a name of dots alone, which the admin API's router would clean away,
// is refused too.
func TestTunnelCLINamesFollowTheServersRules(t *testing.T) {
	for _, name := range []string{"acme", "a", "lab-2", "team_a.prod", strings.Repeat("x", 63)} {
		if err := config.ValidateTunnelName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "Acme", "a/b", "a b", "é", "a%2fb", "..", ".", "...", ".a", strings.Repeat("x", 64)} {
		if err := config.ValidateTunnelName(name); err == nil {
			t.Errorf("%q: accepted", name)
		}
	}
}

func TestTunnelCLINameMayComeBeforeOrAfterTheFlags(t *testing.T) {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	fs.String("host", "", "")
	fs.Bool("json", false, "")
	for _, args := range [][]string{
		{"acme", "--host", "a.example.com", "--json"},
		{"--host", "a.example.com", "acme", "--json"},
		{"--json", "--host=a.example.com", "acme"},
		{"--host", "a.example.com", "--json", "--", "acme"},
	} {
		flags, names := splitPositional(fs, args)
		if err := fs.Parse(flags); err != nil || fs.NArg() != 0 || fs.Lookup("host").Value.String() != "a.example.com" || !reflect.DeepEqual(names, []string{"acme"}) {
			t.Errorf("%q: flags %q (%v), names %q", args, flags, err, names)
		}
	}
	// A flag's value that starts with a dash is still its value.
	if flags, names := splitPositional(fs, []string{"acme", "--host", "-x"}); len(names) != 1 || flags[1] != "-x" {
		t.Errorf("a value with a dash: flags %q, names %q", flags, names)
	}
}

func TestTunnelCLIPortSpecsAndRanges(t *testing.T) {
	if got, err := parsePortSpec("3000-3003"); err != nil || !reflect.DeepEqual(got, []int{3000, 3001, 3002, 3003}) {
		t.Errorf("3000-3003: %v %v", got, err)
	}
	for _, bad := range []string{"0", "65536", "a", "10-9", "1-2000", "-5", "5-"} {
		if _, err := parsePortSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := portRanges([]int{22, 2201, 2202, 2203, 8000}); strings.Join(got, ",") != "22,2201-2203,8000" {
		t.Errorf("portRanges: %v", got)
	}
}

// The commands printed for a tunnel are ones this client takes, once
// PORT is replaced; a wildcard is quoted against the shell.
func TestTunnelCLIClientCommandsRunAsPrinted(t *testing.T) {
	hosts, ports := []string{"app.acme.example.com", "*.acme.example.com"}, []int{2201, 2202, 8000}
	got := clientCommands("wss://tunnel.example.com", []string{"--token", "s3cret"}, tunnelScope{hosts: hosts, tcp: ports})
	want := []string{
		"inlets http client --url wss://tunnel.example.com --token s3cret --upstream app.acme.example.com=http://127.0.0.1:PORT --upstream '*.acme.example.com=http://127.0.0.1:PORT'",
		"inlets tcp client --url wss://tunnel.example.com --token s3cret --upstream 127.0.0.1 --ports 2201-2202,8000",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	for _, argv := range clientArgs("", []string{"--token-file", "./acme.token"}, tunnelScope{hosts: hosts, tcp: ports, udp: []int{53}}) {
		var stdout, stderr bytes.Buffer
		args := strings.Split(strings.ReplaceAll(strings.Join(argv[1:], "\x00"), "PORT", "3000"), "\x00")
		// An unknown host in --url: the client must get past its flags
		// and stop at reading the token file, which does not exist.
		if code := Main("inlets", args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--token-file: open ./acme.token") {
			t.Errorf("inlets %s: exit %d, %q", strings.Join(args, " "), code, stderr.String())
		}
		if argv[4] != placeholderURL {
			t.Errorf("without --url: %q", argv)
		}
	}
	if got := formatCommand([]string{"inlets", "http", "client", "--upstream", "a=x", "--upstream", "b=y"}, " \\\n    "); got != "inlets http client --upstream a=x \\\n    --upstream b=y" {
		t.Errorf("line breaks: %q", got)
	}
	if got := shellQuote("it's"); got != `'it'\''s'` {
		t.Errorf("shellQuote: %s", got)
	}
}

func TestTunnelCLITokensAreRandomAndDigestedAsDocumented(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		token, digest := newToken()
		if len(token) != 43 || token[0] == '-' || seen[token] || strings.ContainsAny(token, "+/=") {
			t.Fatalf("token %q: want 43 base64url characters, not starting with '-', each new", token)
		}
		seen[token] = true
		if digest != tokenDigest(token) || len(digest) != 64 {
			t.Fatalf("digest %q of %q", digest, token)
		}
	}
	// As the server's config documents it: printf %s "$TOKEN" | sha256sum.
	if got := tokenDigest("s3cret"); got != "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0" {
		t.Errorf("tokenDigest(s3cret) = %s", got)
	}
}

func TestTunnelCLIRotationExpiresTheOldTokensAfterTheGrace(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 500_000_000, time.UTC)
	tok := func(s string) map[string]json.RawMessage {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	old := []map[string]json.RawMessage{
		tok(`{"sha256":"aa","@id":"first"}`),
		tok(`{"value":"{env.T}","expires":"2026-03-01T12:10:00Z"}`), // sooner than the grace
		tok(`{"file":"/run/t","expires":"2026-03-01T11:00:00Z"}`),   // expired
	}
	got, last, err := rotateTokens(old, "bb", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(got)
	// The grace is rounded up to the second, never down.
	want := `[{"@id":"first","expires":"2026-03-01T13:00:01Z","sha256":"aa"},{"expires":"2026-03-01T12:10:00Z","value":"{env.T}"},{"sha256":"bb"}]`
	if string(body) != want {
		t.Errorf("tokens:\n got %s\nwant %s", body, want)
	}
	if last == nil || !last.Equal(time.Date(2026, 3, 1, 13, 0, 1, 0, time.UTC)) {
		t.Errorf("last expiry %v", last)
	}

	got, last, _ = rotateTokens(old, "bb", now, 0)
	if body, _ := json.Marshal(got); string(body) != `[{"sha256":"bb"}]` || last != nil {
		t.Errorf("--grace 0 keeps %s, last %v", body, last)
	}
	if _, _, err := rotateTokens([]map[string]json.RawMessage{tok(`{"sha256":"aa","expires":"soon"}`)}, "bb", now, time.Hour); err == nil || !strings.Contains(err.Error(), "token 1: expires") {
		t.Errorf("an unreadable expiry: %v", err)
	}
}

func TestTunnelCLIAdminAddresses(t *testing.T) {
	for address, base := range map[string]string{
		"localhost:2019":         "http://localhost:2019",
		":2020":                  "http://localhost:2020",
		"127.0.0.1:2019":         "http://127.0.0.1:2019",
		"[::1]:2019":             "http://[::1]:2019",
		"http://localhost:2019/": "http://localhost:2019",
		"https://admin.lan:2021": "https://admin.lan:2021",
		"unix//run/caddy.sock":   "http://127.0.0.1",
		"unix//run/c.sock|0220":  "http://127.0.0.1",
	} {
		api, err := newAdminAPI(address)
		if err != nil || api.base != base {
			t.Errorf("%s: %+v %v, want %s", address, api, err, base)
		}
	}
	for _, bad := range []string{"localhost", "ftp://x:1", "http://x:1/config/", "unix/", ""} {
		if _, err := newAdminAPI(bad); err == nil || !strings.Contains(err.Error(), "want host:port") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// fakeAdmin answers as Caddy's admin API does: each "METHOD path" of
// answers gets its status and body; anything else is a 404 of Caddy's
// config traversal. It records the requests' bodies and headers.
type fakeAdmin struct {
	*httptest.Server
	answers  map[string]fakeAnswer
	requests map[string]*http.Request
	bodies   map[string]string
}

type fakeAnswer struct {
	status int
	body   string
}

func newFakeAdmin(t *testing.T, answers map[string]fakeAnswer) *fakeAdmin {
	f := &fakeAdmin{answers: answers, requests: map[string]*http.Request{}, bodies: map[string]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		body, _ := io.ReadAll(r.Body)
		f.requests[key], f.bodies[key] = r, string(body)
		a, ok := f.answers[key]
		if !ok {
			a = fakeAnswer{http.StatusNotFound, `{"error":"[` + r.URL.Path + `] key does not exist"}`}
		}
		w.Header().Set("Etag", `"`+r.URL.Path+` 0123"`)
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAdmin) address() string { return strings.TrimPrefix(f.URL, "http://") }

// runTunnelCLI runs `inlets tunnel args... --address address`.
func runTunnelCLI(address string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Main("inlets", append(append([]string{"tunnel"}, args...), "--address", address), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

const twoTunnels = `{"apps":{"inlets":{"tunnels":{"acme":{"tokens":[{"sha256":"aa"}],"hosts":["*.acme.example.com"]},"lab":{"tokens":[{"value":"s3cret"}],"tcp_ports":[2222]}}}}}`

// Each failure is one line on stderr, with a non-zero status, that says
// what to do.
func TestTunnelCLIFailuresNameTheFix(t *testing.T) {
	admin := newFakeAdmin(t, map[string]fakeAnswer{
		"GET /config/":                                  {200, twoTunnels},
		"PUT /config/apps/inlets/tunnels/acme":          {409, `{"error":"[/config/apps/inlets/tunnels/acme] key already exists: acme"}`},
		"PUT /config/apps/inlets/tunnels/clash":         {500, `{"error":"loading new config: loading inlets app module: provision inlets: tunnel clash: hosts: tunnel acme has *.acme.example.com too"}`},
		"GET /config/apps/inlets/tunnels/acme":          {200, `{"tokens":[{"sha256":"aa"}],"hosts":["*.acme.example.com"]}`},
		"PATCH /config/apps/inlets/tunnels/acme/tokens": {412, `{"error":"If-Match header did not match current config hash"}`},
		"GET /config/apps/inlets/tunnels/gone":          {200, "null\n"},
	})
	// notCaddy listens before the closed port is let go: the kernel may
	// hand a port just released to the next listener.
	notCaddy := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notCaddy.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tt := range []struct {
		address string
		args    []string
		code    int
		want    string
	}{
		{admin.address(), []string{"create", "acme", "--host", "a.acme.example.com"}, 1,
			"inlets tunnel create: tunnel acme exists: rotate its token with 'inlets tunnel rotate acme', or delete it first with 'inlets tunnel delete acme'"},
		{admin.address(), []string{"create", "clash", "--host", "x.acme.example.com"}, 1,
			"inlets tunnel create: Caddy refused the change and keeps its running config: loading new config: loading inlets app module: provision inlets: tunnel clash: hosts: tunnel acme has *.acme.example.com too"},
		{admin.address(), []string{"delete", "nope"}, 1, "inlets tunnel delete: no tunnel nope: Caddy at " + admin.address() + " has acme, lab (see 'inlets tunnel list')"},
		{admin.address(), []string{"rotate", "gone"}, 1, "inlets tunnel rotate: no tunnel gone: Caddy at"},
		{admin.address(), []string{"rotate", "acme"}, 1, "tunnel acme changed while its token was rotated (another change through the admin API): run 'inlets tunnel rotate acme' again"},
		{closed, []string{"list"}, 1, "cannot reach Caddy's admin API at " + closed + " ("},
		{closed, []string{"delete", "acme"}, 1, "is Caddy running with its admin API on " + closed + "? pass --address as its `admin` option gives it"},
		{strings.TrimPrefix(notCaddy.URL, "http://"), []string{"list"}, 1, "is not Caddy's admin API: it answered GET /config/ with HTTP 404 (is --address the address of Caddy's `admin` option?)"},
		{admin.address(), []string{"create", "acme"}, 2, "tunnel acme would serve nothing: give it --host PATTERN, --tcp-port PORT or --udp-port PORT"},
		{admin.address(), []string{"create", "Acme", "--host", "a.example.com"}, 2, `tunnel name "Acme": use 1 to 63 lower-case letters`},
		{admin.address(), []string{"create", "x", "--host", "a.example.com", "--tcp-port", "70000"}, 2, `invalid value "70000" for flag -tcp-port: "70000" is not a port (1-65535) or a range FIRST-LAST such as 8000-8100`},
		{admin.address(), []string{"create", "x", "--host", "a.example.com", "--host", "A.example.com"}, 2, "host a.example.com is given twice"},
		{admin.address(), []string{"create", "x", "--host", "a.example.com", "--url", "http://tunnel.example.com"}, 2, "give the URL clients connect to, wss://HOST or ws://HOST:PORT"},
		{admin.address(), []string{"create", "x", "--host", "a.example.com", "--max-clients", "-1"}, 2, "take a positive number"},
		{admin.address(), []string{"rotate", "acme", "--grace", "soon"}, 2, `invalid value "soon" for flag -grace`},
		{admin.address(), []string{"rotate"}, 2, "the tunnel's NAME is missing, e.g. 'inlets tunnel rotate acme'"},
		{admin.address(), []string{"delete", "acme", "lab"}, 2, `unexpected argument "lab" after the tunnel's name "acme"`},
		{admin.address(), []string{"remove", "acme"}, 2, `unknown command "remove"; the commands are: create, list, rotate, visitors, delete, connect`},
		{"localhost", []string{"list"}, 2, `--address "localhost": want host:port (localhost:2019)`},
	} {
		code, stdout, stderr := runTunnelCLI(tt.address, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stdout != "" {
			t.Errorf("tunnel %s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.want)
		}
	}
	// The refused rotation was conditional on the tunnel read.
	if got := admin.requests["PATCH /config/apps/inlets/tunnels/acme/tokens"].Header.Get("If-Match"); got != `"/config/apps/inlets/tunnels/acme 0123"` {
		t.Errorf("rotate's If-Match: %q", got)
	}
}

// create stores the token's digest, never the token, and prints the token
// with the client command; --json gives the same to a script.
func TestTunnelCLICreateStoresOnlyTheDigestAndPrintsTheTokenOnce(t *testing.T) {
	admin := newFakeAdmin(t, map[string]fakeAnswer{
		"PUT /config/apps/inlets/tunnels/acme": {200, ""},
		"GET /config/":                         {200, `{"admin":{"config":{"persist":false}}}`},
	})
	code, stdout, stderr := runTunnelCLI(admin.address(), "create", "acme", "--host", "App.acme.example.com,*.acme.example.com",
		"--tcp-port", "2202-2203", "--tcp-port", "2201", "--max-clients", "4", "--url", "wss://tunnel.example.com", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out issued
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	var stored config.Tunnel
	put := admin.bodies["PUT /config/apps/inlets/tunnels/acme"]
	if err := json.Unmarshal([]byte(put), &stored); err != nil {
		t.Fatal(err)
	}
	want := config.Tunnel{Tokens: []config.Token{{SHA256: tokenDigest(out.Token)}}, Hosts: []string{"app.acme.example.com", "*.acme.example.com"},
		TCPPorts: []int{2201, 2202, 2203}, MaxClients: 4}
	if !reflect.DeepEqual(stored, want) || strings.Contains(put, out.Token) || out.SHA256 != tokenDigest(out.Token) {
		t.Errorf("stored %s; want %+v and never the token %s", put, want, out.Token)
	}
	if ct := admin.requests["PUT /config/apps/inlets/tunnels/acme"].Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	// The commands read the token from a file: on a command line it would
	// be in ps's output and the shell's history.
	if len(out.Commands) != 2 || !strings.Contains(out.Commands[0], "--token-file ./acme.token --upstream app.acme.example.com=http://127.0.0.1:PORT") ||
		!strings.HasSuffix(out.Commands[1], "--upstream 127.0.0.1 --ports 2201-2203") || strings.Contains(strings.Join(out.Commands, " "), out.Token) {
		t.Errorf("commands %q", out.Commands)
	}
	if !strings.Contains(stderr, "does not autosave its config") || !strings.Contains(stderr, "has no TCP data plane, so it refuses the tunnel's TCP and UDP clients") {
		t.Errorf("no warning that the tunnel is lost at a restart, or that its TCP clients are refused: %q", stderr)
	}

	code, stdout, _ = runTunnelCLI(admin.address(), "create", "acme", "--host", "app.acme.example.com")
	lines := strings.Split(stdout, "\n")
	token := strings.TrimSpace(lines[lineIndex(lines, "Its token, shown this once")+2])
	if code != 0 || len(token) != 43 || strings.Count(stdout, token) != 1 ||
		!strings.Contains(stdout, "    inlets http client --url wss://SERVER --token-file ./acme.token --upstream app.acme.example.com=http://127.0.0.1:PORT\n") ||
		!strings.Contains(stdout, "Replace PORT with the local port of the service behind each host, and wss://SERVER with the server's address") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
}

// lineIndex returns the index of the first line that starts with prefix.
func lineIndex(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func TestTunnelCLIListJoinsTheTunnelsWithTheirClients(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	soon, past := now.Add(54*time.Minute), now.Add(-time.Minute)
	tunnels := map[string]*config.Tunnel{
		"lab":  {Tokens: []config.Token{{Value: "s3cret"}}, TCPPorts: []int{8001, 8000, 2222}, MaxClients: 2},
		"acme": {Tokens: []config.Token{{SHA256: "aa", Expires: &soon}, {SHA256: "bb"}, {File: "/t", Expires: &past}}, Hosts: []string{"*.acme.example.com"}, MaxStreamsPerClient: 50},
	}
	st := status.Status{Clients: []status.Client{
		{ClientID: "shop-1", RemoteAddr: "10.0.0.7:50122", Since: now.Add(-3 * time.Hour), Upstreams: []string{"shop.acme.example.com=http://127.0.0.1:3000"}, Tunnel: "acme"},
		{ClientID: "own", RemoteAddr: "10.0.0.8:40000", Since: now, Upstreams: []string{"*=http://127.0.0.1:8080"}},
	}}
	list := listTunnels(tunnels, st, true, now)
	var b strings.Builder
	if err := writeTunnelTable(&b, list, true, now, "inlets tunnel"); err != nil {
		t.Fatal(err)
	}
	want := `Tunnel  Hosts               TCP Ports        Max Clients  Max Streams  Tokens                                   Clients
acme    *.acme.example.com  -                -            50           3 (1 expiring in 54 minutes, 1 expired)  1
lab     -                   2222, 8000-8001  2            -            1                                        0

Connected clients:
Tunnel  Client ID  Remote Address  Connected  Upstreams
acme    shop-1     10.0.0.7:50122  3 hours    shop.acme.example.com=http://127.0.0.1:3000
-       own        10.0.0.8:40000  now        *=http://127.0.0.1:8080
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	body, _ := json.Marshal(list)
	if strings.Contains(string(body), "s3cret") || !strings.Contains(string(body), `"form":"value"`) || !strings.Contains(string(body), `"expired":true`) {
		t.Errorf("JSON shows a token, or not its form: %s", body)
	}

	// Without the status, the tunnels are still listed, their clients not.
	b.Reset()
	writeTunnelTable(&b, listTunnels(tunnels, status.Status{}, false, now), false, now, "inlets tunnel")
	if !strings.Contains(b.String(), "1                                        ?\n") || strings.Contains(b.String(), "Connected clients") {
		t.Errorf("without the status:\n%s", b.String())
	}
	b.Reset()
	writeTunnelTable(&b, listTunnels(nil, st, true, now), true, now, "inlets tunnel")
	if !strings.HasPrefix(b.String(), "No tunnels: create one with 'inlets tunnel create NAME --host PATTERN'.\n") {
		t.Errorf("no tunnels:\n%s", b.String())
	}
}

func TestTunnelCLIHelp(t *testing.T) {
	for _, cmd := range []string{"create", "list", "rotate", "delete", "connect"} {
		var stdout, stderr bytes.Buffer
		code := Main("caddy inlets", []string{"tunnel", cmd, "--help"}, &stdout, &stderr)
		out := stdout.String()
		if code != 0 || stderr.Len() > 0 || !strings.HasPrefix(out, "Usage: caddy inlets tunnel "+cmd+" ") ||
			!strings.Contains(out, "\n  --address ADDRESS\n") || !strings.Contains(out, "Examples:\n  caddy inlets tunnel "+cmd) {
			t.Errorf("tunnel %s --help: exit %d, stderr %q:\n%s", cmd, code, stderr.String(), out)
		}
		if strings.Contains(out, "Required flags:") != (cmd == "create") {
			t.Errorf("tunnel %s --help: Required flags, or their absence, wrong:\n%s", cmd, out)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main("inlets", []string{"tunnel"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "Usage: inlets tunnel <command> NAME [flags]") {
		t.Errorf("tunnel alone: exit %d, %q", code, stderr.String())
	}
	stdout.Reset()
	if code := Main("inlets", []string{"--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), fmt.Sprintf("  %-12s create, list, rotate and delete", "tunnel")) {
		t.Errorf("inlets --help lacks the tunnel command:\n%s", stdout.String())
	}
}

func TestTunnelCLIClientCommandsCarryUDPPorts(t *testing.T) {
	got := clientCommands("wss://tunnel.example.com", []string{"--token", "s3cret"}, tunnelScope{udp: []int{53, 51820, 51821}})
	want := []string{"inlets tcp client --url wss://tunnel.example.com --token s3cret --upstream 127.0.0.1 --udp-ports 53,51820-51821"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if s := scopeOf(tunnelScope{hosts: []string{"a.example.com"}, udp: []int{53}}); s != "hosts a.example.com and UDP ports 53" {
		t.Fatalf("scopeOf: %q", s)
	}
}
