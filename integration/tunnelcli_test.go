package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/status"
)

// caddyServer is the built caddy binary run as an operator runs it: a
// process of its own, with its admin API on a port of its own, and its
// config and data, the autosave among them, in directories of its own.
type caddyServer struct {
	proc  *testenv.Process
	admin string // the admin API, localhost:PORT
	site  string // the site serving the inlets control plane, 127.0.0.1:PORT
	// configDir is its XDG_CONFIG_HOME, where the autosave is.
	configDir string
}

// isolateCaddy points the caddy processes that the test starts at
// directories of the test's own, and returns its XDG_CONFIG_HOME. The
// binaries are built first: `go build` finds its cache through HOME.
func isolateCaddy(t *testing.T) string {
	t.Helper()
	testenv.Binary(t, "caddy")
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	return filepath.Join(home, "config")
}

// startCaddyServer runs `caddy run` with a Caddyfile whose only site, on
// a free port, serves the inlets control plane with a token of its own, so
// that the config is valid before any tunnel exists. Its TCP data plane
// has a port of its own for the same reason: it refuses to load without
// ports while no tunnel has any.
func startCaddyServer(t *testing.T) *caddyServer {
	t.Helper()
	s := &caddyServer{
		admin:     fmt.Sprintf("localhost:%d", testenv.FreePort(t)),
		site:      fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		configDir: isolateCaddy(t),
	}
	caddyfile := fmt.Sprintf("{\n\tadmin %s\n\tinlets {\n\t\ttcp {\n\t\t\tbind 127.0.0.1\n\t\t\tports %d\n\t\t}\n\t}\n}\n:%s {\n\tinlets {\n\t\ttoken %s\n\t}\n}\n",
		s.admin, testenv.FreePort(t), strings.TrimPrefix(s.site, "127.0.0.1:"), testenv.Token)
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(t, "run", "--config", file, "--adapter", "caddyfile")
	return s
}

// run starts caddy with args and waits until its admin API answers.
func (s *caddyServer) run(t *testing.T, args ...string) {
	t.Helper()
	s.proc = testenv.Start(t, testenv.Binary(t, "caddy"), args...)
	testenv.Eventually(t, 20*time.Second, func() error {
		if s.proc.Cmd.ProcessState != nil {
			t.Fatalf("caddy %s exited:\n%s", strings.Join(args, " "), s.proc.Output())
		}
		resp, err := adminHTTP.Get("http://" + s.admin + "/config/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /config/: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// stop stops caddy as `caddy stop` does, and waits for it to exit.
func (s *caddyServer) stop(t *testing.T) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- s.proc.Cmd.Wait() }()
	if code, stdout, stderr := runBinary(t, "caddy", "stop", "--address", s.admin); code != 0 {
		t.Fatalf("caddy stop: exit %d\n%s%s", code, stdout, stderr)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("caddy did not exit after `caddy stop`:\n%s", s.proc.Output())
	}
}

// adminHTTP talks to the admin APIs of the test's caddy processes; its
// connections do not outlive a request, nor so a restart.
var adminHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// tunnel runs `caddy inlets tunnel args... --address <admin>`.
func (s *caddyServer) tunnel(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runBinary(t, "caddy", append(append([]string{"inlets", "tunnel"}, args...), "--address", s.admin)...)
}

// mustTunnel runs a tunnel command that must succeed, and returns its
// output.
func (s *caddyServer) mustTunnel(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := s.tunnel(t, args...)
	if code != 0 || stderr != "" {
		t.Fatalf("caddy inlets tunnel %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// status reads the admin API's /inlets/status.
func (s *caddyServer) status(t *testing.T) status.Status {
	t.Helper()
	resp, err := adminHTTP.Get("http://" + s.admin + "/inlets/status")
	if err != nil {
		t.Fatalf("GET /inlets/status: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /inlets/status: HTTP %d %s", resp.StatusCode, body)
	}
	return decodeStatus(t, body)
}

// connected reports whether a client of tunnel is connected with id.
func (s *caddyServer) connected(t *testing.T, tunnel, id string) bool {
	return slices.Contains(tunnelClients(s.status(t)), tunnel+"/"+id)
}

// issuedToken is what create and rotate print with --json.
type issuedToken struct {
	Name            string    `json:"name"`
	Token           string    `json:"token"`
	SHA256          string    `json:"sha256"`
	OldTokensExpire time.Time `json:"old_tokens_expire"`
	Commands        []string  `json:"commands"`
}

func decodeIssued(t *testing.T, stdout string) issuedToken {
	t.Helper()
	var out issuedToken
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.Token == "" || len(out.Commands) == 0 {
		t.Fatalf("not a new token's JSON (%v):\n%s", err, stdout)
	}
	return out
}

// listed is what `tunnel list --json` prints, as far as the test reads it.
type listed struct {
	Tunnels []struct {
		Name       string          `json:"name"`
		Hosts      []string        `json:"hosts"`
		TCPPorts   []int           `json:"tcp_ports"`
		MaxClients int             `json:"max_clients"`
		Tokens     []listedToken   `json:"tokens"`
		Clients    []status.Client `json:"clients"`
	} `json:"tunnels"`
}

type listedToken struct {
	Form    string     `json:"form"`
	SHA256  string     `json:"sha256"`
	Expires *time.Time `json:"expires"`
	Expired bool       `json:"expired"`
}

func (s *caddyServer) list(t *testing.T) listed {
	t.Helper()
	var l listed
	stdout := s.mustTunnel(t, "list", "--json")
	if err := json.Unmarshal([]byte(stdout), &l); err != nil {
		t.Fatalf("list --json: %v\n%s", err, stdout)
	}
	return l
}

// summary is each tunnel of a list as name: hosts ports max-clients,
// its tokens' forms (and "expired"), and its clients' IDs.
func (l listed) summary() []string {
	var out []string
	for _, tun := range l.Tunnels {
		var tokens, clients []string
		for _, tok := range tun.Tokens {
			if tok.Expired {
				tok.Form += "(expired)"
			} else if tok.Expires != nil {
				tok.Form += "(expiring)"
			}
			tokens = append(tokens, tok.Form)
		}
		for _, c := range tun.Clients {
			clients = append(clients, c.ClientID)
		}
		out = append(out, fmt.Sprintf("%s: %v %v max %d, tokens %v, clients %v", tun.Name, tun.Hosts, tun.TCPPorts, tun.MaxClients, tokens, clients))
	}
	return out
}

// printedCommand finds the client command with prefix that a tunnel
// command printed, as its words, with PORT replaced by port and the
// inlets binary in front: ready to run.
func printedCommand(t *testing.T, output, prefix string, port, token string) []string {
	t.Helper()
	for _, line := range strings.Split(strings.ReplaceAll(output, " \\\n", " "), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, prefix) {
			words := shellWords(strings.ReplaceAll(line, ":PORT", ":"+port))
			// The token goes in the file the command reads it from,
			// as the printed instructions say.
			for i, w := range words {
				if i > 0 && words[i-1] == "--token-file" && strings.HasPrefix(w, "./") {
					file := filepath.Join(t.TempDir(), filepath.Base(w))
					if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
						t.Fatal(err)
					}
					words[i] = file
				}
			}
			return append([]string{testenv.Binary(t, "inlets")}, words[1:]...)
		}
	}
	t.Fatalf("no command %q in:\n%s", prefix, output)
	return nil
}

// shellWords splits a command line as a POSIX shell does, for the
// single quotes that the tunnel commands write.
func shellWords(line string) []string {
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, word.String())
			}
			word.Reset()
			inWord = false
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

func portOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// The tunnel commands drive a real Caddy through its admin API: tunnels
// created, listed, rotated and deleted there take effect at once and
// survive a restart with --resume, and the config never holds a token.
func TestTunnelCLI(t *testing.T) {
	srv := startCaddyServer(t)
	serverURL := "ws://" + srv.site
	acmeUp, bulkUp := newUpstream(t, "acme"), newUpstream(t, "bulk")
	dbEcho := newEchoUpstream(t, "db")
	dbPort := testenv.FreePort(t)

	// create prints the token, once, and the command that runs the client
	// with it; run as printed, that client serves the tunnel's host.
	out := srv.mustTunnel(t, "create", "acme", "--host", "app.acme.example.com", "--url", serverURL)
	lines := strings.Split(out, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Its token, shown this once") })
	if i < 0 || i+2 >= len(lines) || !strings.Contains(out, "Created tunnel acme, serving hosts app.acme.example.com.") {
		t.Fatalf("create acme printed:\n%s", out)
	}
	acmeToken := strings.TrimSpace(lines[i+2])
	if strings.Count(out, acmeToken) != 1 || !strings.Contains(out, "--token-file ./acme.token") {
		t.Fatalf("create acme printed the token in its commands, or no --token-file:\n%s", out)
	}
	acmeCmd := printedCommand(t, out, "inlets http client", portOf(t, acmeUp.URL), acmeToken)
	if !slices.Contains(acmeCmd, serverURL) {
		t.Fatalf("the client command %q lacks the URL", acmeCmd)
	}
	acme := testenv.Start(t, acmeCmd[0], append(acmeCmd[1:], "--id", "acme-1")...)
	acme.WaitOutput(t, 10*time.Second, "msg=connected")
	if code, e := request(t, http.MethodGet, srv.site, "app.acme.example.com", "/", nil); code != http.StatusOK || e.Upstream != "acme" {
		t.Fatalf("acme's host through its new tunnel: %d %+v", code, e)
	}

	// bulk, with --json and a limit; db, a TCP tunnel.
	bulk := decodeIssued(t, srv.mustTunnel(t, "create", "bulk", "--host", "files.bulk.example.com", "--max-clients", "4", "--url", serverURL, "--json"))
	bulkCmd := printedCommand(t, bulk.Commands[0], "inlets http client", portOf(t, bulkUp.URL), bulk.Token)
	bulk1 := testenv.Start(t, bulkCmd[0], append(bulkCmd[1:], "--id", "bulk-1")...)
	bulk1.WaitOutput(t, 10*time.Second, "msg=connected")
	out = srv.mustTunnel(t, "create", "db", "--tcp-port", fmt.Sprint(dbPort), "--url", serverURL)
	lines = strings.Split(out, "\n")
	i = slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Its token, shown this once") })
	dbCmd := printedCommand(t, out, "inlets tcp client", "", strings.TrimSpace(lines[i+2]))
	dbPorts := slices.Index(dbCmd, "--ports")
	if dbPorts < 0 || dbCmd[dbPorts+1] != fmt.Sprint(dbPort) {
		t.Fatalf("db's command: %q", dbCmd)
	}
	// On one machine, the public port cannot be the local one too.
	dbCmd[dbPorts+1] += ":" + portOf(t, "tcp://"+dbEcho.Addr())
	db := testenv.Start(t, dbCmd[0], append(dbCmd[1:], "--id", "db-1")...)
	db.WaitOutput(t, 10*time.Second, "msg=connected")
	if got := whoServes(t, dbPort); got != "db" {
		t.Fatalf("db's port served by %q", got)
	}

	want := []string{
		"acme: [app.acme.example.com] [] max 0, tokens [sha256], clients [acme-1]",
		"bulk: [files.bulk.example.com] [] max 4, tokens [sha256], clients [bulk-1]",
		fmt.Sprintf("db: [] [%d] max 0, tokens [sha256], clients [db-1]", dbPort),
	}
	if got := srv.list(t).summary(); !slices.Equal(got, want) {
		t.Errorf("list --json:\n got %q\nwant %q", got, want)
	}
	// The standalone binary has the same commands, and the table.
	code, table, stderr := runBinary(t, "inlets", "tunnel", "list", "--address", srv.admin)
	for _, row := range []string{"acme    app.acme.example.com ", "bulk    files.bulk.example.com ", "Connected clients:", "acme    acme-1 "} {
		if code != 0 || !strings.Contains(table, row) {
			t.Errorf("inlets tunnel list: exit %d, no %q in\n%s%s", code, row, table, stderr)
		}
	}

	// Delete acme while a 200 MB download from bulk is half way: acme's
	// client is gone within a second, the download completes intact.
	const size = 200 << 20
	wantSHA := make(chan string, 1)
	go func() { wantSHA <- payloadSHA(size) }()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/download?size=%d", srv.site, size), nil)
	req.Host = "files.bulk.example.com"
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	h := sha256.New()
	// Until the rest is read, flow control holds it in the tunnel: the
	// delete below happens mid-download, whatever the machine's speed.
	const head = 64 << 20
	if _, err := io.CopyN(h, resp.Body, head); err != nil {
		t.Fatalf("the download's first %d bytes: %v", head, err)
	}
	started := time.Now()
	out = srv.mustTunnel(t, "delete", "acme")
	deleted := time.Now()
	type result struct {
		n   int64
		err error
	}
	rest := make(chan result, 1)
	go func() {
		n, err := io.Copy(h, resp.Body)
		rest <- result{n, err}
	}()
	testenv.Eventually(t, time.Second, func() error {
		if srv.connected(t, "acme", "acme-1") {
			return fmt.Errorf("acme's client is still connected")
		}
		return nil
	})
	gone := time.Since(deleted)
	// The client is told why, with the reject code, and waits its longest
	// backoff: retrying cannot help until an operator acts.
	acme.WaitOutput(t, max(time.Second-time.Since(deleted), 10*time.Millisecond),
		`error="server disconnected the tunnel: tunnel acme no longer exists on this server" code=token-refused`)
	t.Logf("delete: the command took %s; acme's client was gone from /inlets/status %s after it returned; the client saw it within %s",
		deleted.Sub(started).Round(time.Millisecond), gone.Round(time.Millisecond), time.Since(deleted).Round(time.Millisecond))
	if !strings.Contains(out, "Deleted tunnel acme; Caddy disconnected its client.") {
		t.Errorf("delete printed %q", out)
	}
	select {
	case r := <-rest:
		sum := hex.EncodeToString(h.Sum(nil))
		if r.err != nil || head+r.n != size || sum != <-wantSHA {
			t.Fatalf("the download across the delete: %d bytes of %d, %v, sha256 %s", head+r.n, size, r.err, sum)
		}
		t.Logf("download across the delete: %d bytes, sha256 %s, as sent", head+r.n, sum)
	case <-time.After(2 * time.Minute):
		t.Fatal("the download did not complete in 2 minutes after the delete")
	}
	// acme's token is refused now, and its host is no tunnel's.
	if code, body := get(t, "http://"+srv.site+"/status", acmeToken); code != http.StatusUnauthorized {
		t.Errorf("acme's token after the delete: HTTP %d %s, want 401", code, body)
	}
	acme.Kill()
	if n := strings.Count(acme.Output(), "server disconnected the tunnel"); n != 1 {
		t.Errorf("acme's client said %d times why it was disconnected, want once:\n%s", n, acme.Output())
	}
	if code, _ := request(t, http.MethodGet, srv.site, "app.acme.example.com", "/", nil); code != http.StatusBadGateway {
		t.Errorf("acme's host after the delete: %d, want 502", code)
	}

	// Rotate bulk with a grace of 3s: the new token connects; the old one
	// is still accepted, and its client connected, until the grace ends,
	// and from then on neither.
	rot := decodeIssued(t, srv.mustTunnel(t, "rotate", "bulk", "--grace", "3s", "--url", serverURL, "--json"))
	expire := rot.OldTokensExpire
	if rot.Token == bulk.Token || expire.Before(time.Now().Add(2*time.Second)) || expire.After(time.Now().Add(4*time.Second)) {
		t.Fatalf("rotate: new token %q (old %q), old tokens expire at %s", rot.Token, bulk.Token, expire)
	}
	if code, body := get(t, "http://"+srv.site+"/status", bulk.Token); code != http.StatusOK || !time.Now().Before(expire) {
		t.Fatalf("the old token within the grace: HTTP %d %s (%s before it ends)", code, body, time.Until(expire))
	}
	bulk2Cmd := printedCommand(t, rot.Commands[0], "inlets http client", portOf(t, bulkUp.URL), rot.Token)
	bulk2 := testenv.Start(t, bulk2Cmd[0], append(bulk2Cmd[1:], "--id", "bulk-2")...)
	bulk2.WaitOutput(t, 10*time.Second, "msg=connected")
	// Each observation is dated when its answer arrived: an answer that
	// arrived before the grace ended was given before it, too.
	var refused, disconnected time.Time
	testenv.Eventually(t, time.Until(expire)+5*time.Second, func() error {
		if code, _ := get(t, "http://"+srv.site+"/status", bulk.Token); code == http.StatusUnauthorized && refused.IsZero() {
			refused = time.Now()
		}
		if !srv.connected(t, "bulk", "bulk-1") && disconnected.IsZero() {
			disconnected = time.Now()
		}
		if refused.IsZero() || disconnected.IsZero() {
			return fmt.Errorf("the old token is still accepted (%v), or its client connected (%v)", refused.IsZero(), disconnected.IsZero())
		}
		return nil
	})
	t.Logf("rotate --grace 3s: the old token was refused %s after the grace, its client gone %s after",
		refused.Sub(expire).Round(time.Millisecond), disconnected.Sub(expire).Round(time.Millisecond))
	if refused.Before(expire) || disconnected.Before(expire) || refused.Sub(expire) > time.Second || disconnected.Sub(expire) > time.Second {
		t.Errorf("grace ending at %s: the old token refused at %s, its client disconnected at %s; want both in the second after",
			expire.Format(time.StampMilli), refused.Format(time.StampMilli), disconnected.Format(time.StampMilli))
	}
	bulk1.WaitOutput(t, 10*time.Second, `error="server disconnected the tunnel: the token of tunnel bulk was replaced or has expired: get the current one from the server's operator" code=token-refused`)
	bulk1.Kill()
	if code, e := request(t, http.MethodGet, srv.site, "files.bulk.example.com", "/", nil); code != http.StatusOK || e.Upstream != "bulk" {
		t.Errorf("bulk's host after the grace: %d %+v", code, e)
	}
	want = []string{
		"bulk: [files.bulk.example.com] [] max 4, tokens [sha256(expired) sha256], clients [bulk-2]",
		fmt.Sprintf("db: [] [%d] max 0, tokens [sha256], clients [db-1]", dbPort),
	}
	l := srv.list(t)
	if got := l.summary(); !slices.Equal(got, want) || l.Tunnels[0].Tokens[1].SHA256 != rot.SHA256 {
		t.Errorf("list --json after the rotation:\n got %q\nwant %q", got, want)
	}

	// Mistakes: each one line, a non-zero status, and the fix.
	unreachable := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "bulk", "--host", "other.bulk.example.com", "--address", srv.admin},
			"caddy inlets tunnel create: tunnel bulk exists: rotate its token with 'caddy inlets tunnel rotate bulk', or delete it first with 'caddy inlets tunnel delete bulk'"},
		{[]string{"delete", "acme", "--address", srv.admin},
			"caddy inlets tunnel delete: no tunnel acme: Caddy at " + srv.admin + " has bulk, db (see 'caddy inlets tunnel list')"},
		{[]string{"list", "--address", unreachable},
			"caddy inlets tunnel list: cannot reach Caddy's admin API at " + unreachable + " (dial tcp " + unreachable + ": connect: connection refused): is Caddy running with its admin API on " + unreachable + "? pass --address as its `admin` option gives it"},
	} {
		code, stdout, stderr := runBinary(t, "caddy", append([]string{"inlets", "tunnel"}, tt.args...)...)
		if code != 1 || stdout != "" || strings.TrimSpace(stderr) != tt.want {
			t.Errorf("tunnel %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", strings.Join(tt.args, " "), code, stdout, stderr, tt.want)
		}
	}

	// Caddy restarted from its autosave has the tunnels made through the
	// API: bulk's client connects again by itself, and `connect` prints a
	// command that does too, with the token in a file.
	srv.stop(t)
	srv.run(t, "run", "--resume")
	if got := srv.list(t).summary(); len(got) != 2 || !strings.HasPrefix(got[0], "bulk: [files.bulk.example.com] [] max 4, tokens [sha256(expired) sha256]") ||
		!strings.HasPrefix(got[1], fmt.Sprintf("db: [] [%d]", dbPort)) {
		t.Errorf("list after caddy run --resume: %q", got)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if !srv.connected(t, "bulk", "bulk-2") {
			return fmt.Errorf("bulk-2 has not reconnected to the restarted Caddy")
		}
		return nil
	})
	tokenFile := filepath.Join(t.TempDir(), "bulk.token")
	if err := os.WriteFile(tokenFile, []byte(rot.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = srv.mustTunnel(t, "connect", "bulk", "--url", serverURL, "--token-file", tokenFile)
	bulk3Cmd := printedCommand(t, out, "inlets http client", portOf(t, bulkUp.URL), "")
	bulk3 := testenv.Start(t, bulk3Cmd[0], append(bulk3Cmd[1:], "--id", "bulk-3")...)
	bulk3.WaitOutput(t, 10*time.Second, "msg=connected")
	if code, e := request(t, http.MethodGet, srv.site, "files.bulk.example.com", "/", nil); code != http.StatusOK || e.Upstream != "bulk" {
		t.Errorf("bulk's host after the restart: %d %+v", code, e)
	}
	if code, _ := get(t, "http://"+srv.site+"/status", bulk.Token); code != http.StatusUnauthorized {
		t.Errorf("bulk's expired token after the restart: HTTP %d, want 401", code)
	}

	// The autosave, which --resume loaded, has the tokens' digests only.
	autosave, err := os.ReadFile(filepath.Join(srv.configDir, "caddy", "autosave.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, token := range map[string]string{"acme's": acmeToken, "bulk's first": bulk.Token, "bulk's second": rot.Token} {
		if strings.Contains(string(autosave), token) {
			t.Errorf("the autosave holds %s token", name)
		}
	}
	if !strings.Contains(string(autosave), `"sha256":"`+rot.SHA256+`"`) || !strings.Contains(string(autosave), `"sha256":"`+sha256Hex(rot.Token)+`"`) {
		t.Errorf("the autosave lacks the digest of bulk's token:\n%s", autosave)
	}

	// A change that Caddy refuses says why, in Caddy's words, and
	// changes nothing.
	code, stdout, stderr := srv.tunnel(t, "create", "clash", "--host", "files.bulk.example.com")
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "caddy inlets tunnel create: Caddy refused the change and keeps its running config: loading new config: ") ||
		!strings.Contains(stderr, "tunnel clash: hosts: tunnel bulk has files.bulk.example.com too") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("a clashing tunnel: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := srv.list(t).summary(); len(got) != 2 {
		t.Errorf("after a refused change the tunnels are %q", got)
	}
}

// A change that Caddy refuses leaves the running config, its clients
// included, as they were.
func TestTunnelCLIRefusedChangeKeepsTheClientsConnected(t *testing.T) {
	srv := startCaddyServer(t)
	up := newUpstream(t, "acme")
	acme := decodeIssued(t, srv.mustTunnel(t, "create", "acme", "--host", "app.acme.example.com", "--url", "ws://"+srv.site, "--json"))
	cmd := printedCommand(t, acme.Commands[0], "inlets http client", portOf(t, up.URL), acme.Token)
	client := testenv.Start(t, cmd[0], append(cmd[1:], "--id", "acme-1")...)
	client.WaitOutput(t, 10*time.Second, "msg=connected")

	if code, _, _ := srv.tunnel(t, "create", "clash", "--host", "app.acme.example.com"); code != 1 {
		t.Fatalf("a clashing tunnel: exit %d, want 1", code)
	}
	if !srv.connected(t, "acme", "acme-1") {
		t.Errorf("acme's client was disconnected by a change that Caddy refused:\n%s", client.Output())
	}
	if code, e := request(t, http.MethodGet, srv.site, "app.acme.example.com", "/", nil); code != http.StatusOK || e.Upstream != "acme" {
		t.Errorf("acme's host after a refused change: %d %+v", code, e)
	}
	// And a client that connects afterwards is taken.
	client.Kill()
	again := testenv.Start(t, cmd[0], append(cmd[1:], "--id", "acme-2")...)
	again.WaitOutput(t, 10*time.Second, "msg=connected")
}

// `tunnel create --visitor-allow` and `tunnel visitors` set who may visit
// a tunnel through the admin API; each change applies to the next
// visitor, and the tunnel's client stays connected through all of them.
func TestTunnelCLISetsWhoMayVisitWithoutAReconnect(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (CI installs it, see .ci/run)")
	}
	srv := startCaddyServer(t)
	up := newUpstream(t, "acme")
	out := srv.mustTunnel(t, "create", "acme", "--host", "app.acme.example.com", "--visitor-allow", "127.0.0.1/32", "--url", "ws://"+srv.site)
	lines := strings.Split(out, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Its token, shown this once") })
	cmd := printedCommand(t, out, "inlets http client", portOf(t, up.URL), strings.TrimSpace(lines[i+2]))
	c := testenv.Start(t, cmd[0], append(cmd[1:], "--id", "acme-visited")...)
	c.WaitOutput(t, 10*time.Second, "msg=connected")
	from := func(addr string) int {
		t.Helper()
		out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--interface", addr,
			"-H", "Host: app.acme.example.com", "http://"+srv.site+"/").Output()
		if err != nil {
			t.Fatalf("curl --interface %s: %v", addr, err)
		}
		var code int
		fmt.Sscan(string(out), &code)
		return code
	}
	if a, b := from("127.0.0.1"), from("127.0.0.2"); a != http.StatusOK || b != http.StatusForbidden {
		t.Fatalf("created with --visitor-allow 127.0.0.1/32: 127.0.0.1 got %d, 127.0.0.2 %d; want 200, 403", a, b)
	}

	if out := srv.mustTunnel(t, "visitors", "acme", "--allow", "127.0.0.2", "--rate", "600/m"); !strings.Contains(out, "Tunnel acme's visitors: only from 127.0.0.2; 10 requests/s per visitor (burst 10).") {
		t.Fatalf("visitors --allow 127.0.0.2 printed %q", out)
	}
	if a, b := from("127.0.0.1"), from("127.0.0.2"); a != http.StatusForbidden || b != http.StatusOK {
		t.Fatalf("after visitors --allow 127.0.0.2: 127.0.0.1 got %d, 127.0.0.2 %d; want 403, 200", a, b)
	}
	if out := srv.mustTunnel(t, "visitors", "acme"); !strings.Contains(out, "only from 127.0.0.2") {
		t.Fatalf("visitors acme printed %q", out)
	}
	if code, _, stderr := srv.tunnel(t, "visitors", "acme", "--allow", "127.0.0.300"); code != 2 || !strings.Contains(stderr, `"127.0.0.300": want a CIDR`) {
		t.Fatalf("a bad address: exit %d, %q", code, stderr)
	}
	if out := srv.mustTunnel(t, "visitors", "acme", "--bandwidth-down", "1MiB/s", "--bandwidth-up", "512KiB/s"); !strings.Contains(out, "Tunnel acme's visitors: at most 1.0 MiB/s down; at most 512 KiB/s up.") {
		t.Fatalf("visitors --bandwidth-down printed %q", out)
	}
	// Basic auth from the command line, with a hash of `caddy hash-password`.
	hash, err := exec.Command(testenv.Binary(t, "caddy"), "hash-password", "--plaintext", "s3cret").Output()
	if err != nil {
		t.Fatal(err)
	}
	if out := srv.mustTunnel(t, "visitors", "acme", "--basic-auth", "alice="+strings.TrimSpace(string(hash)), "--auth-skip", "/hook/*"); !strings.Contains(out, "basic auth, 1 account(s); no auth for /hook/*") {
		t.Fatalf("visitors --basic-auth printed %q", out)
	}
	if code := from("127.0.0.1"); code != http.StatusUnauthorized {
		t.Fatalf("after visitors --basic-auth, no credentials: %d, want 401", code)
	}
	if code, _, stderr := srv.tunnel(t, "visitors", "acme", "--rate", "10/s"); code != 2 || !strings.Contains(stderr, "add --replace to let its visitors in without") {
		t.Fatalf("replacing a policy with basic auth by one without: exit %d, %q; want it refused", code, stderr)
	}
	if code := from("127.0.0.1"); code != http.StatusUnauthorized {
		t.Fatalf("after the refused replacement, no credentials: %d, want 401 still", code)
	}
	if code, _, stderr := srv.tunnel(t, "visitors", "acme", "--forward-auth", "127.0.0.1:9091"); code != 2 || !strings.Contains(stderr, `--forward-auth: uri "": want the path to ask`) {
		t.Fatalf("--forward-auth without --forward-auth-uri: exit %d, %q", code, stderr)
	}
	srv.mustTunnel(t, "visitors", "acme", "--clear")
	if a, b := from("127.0.0.1"), from("127.0.0.2"); a != http.StatusOK || b != http.StatusOK {
		t.Fatalf("after visitors --clear: 127.0.0.1 got %d, 127.0.0.2 %d; want 200, 200", a, b)
	}
	if n := strings.Count(c.Output(), "msg=connected"); n != 1 {
		t.Fatalf("the client connected %d times across the changes, want once", n)
	}
}
