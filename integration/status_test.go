package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/cli"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/internal/version"
	"github.com/caddy-inlets/caddy-inlets/status"
)

// get sends a GET with an optional bearer token and returns the status and
// body.
func get(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// controlStatus reads /status from the control plane at addr.
func controlStatus(t *testing.T, addr string) status.Status {
	t.Helper()
	code, body := get(t, "http://"+addr+"/status", testenv.Token)
	if code != http.StatusOK {
		t.Fatalf("/status: HTTP %d %s", code, body)
	}
	return decodeStatus(t, body)
}

// adminStatus reads /inlets/status from Caddy's admin endpoint.
func adminStatus(t *testing.T) status.Status {
	t.Helper()
	code, body := get(t, fmt.Sprintf("http://localhost:%d/inlets/status", adminPort), "")
	if code != http.StatusOK {
		t.Fatalf("admin /inlets/status: HTTP %d %s", code, body)
	}
	return decodeStatus(t, body)
}

func decodeStatus(t *testing.T, body []byte) status.Status {
	t.Helper()
	var s status.Status
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("decoding status %s: %v", body, err)
	}
	return s
}

// waitNoSessions waits until the sessions of earlier tests have ended, so
// that a test can count sessions.
func waitNoSessions(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if reg := registry.Current(); reg != nil {
			if n := len(reg.Sessions()); n != 0 {
				return fmt.Errorf("%d sessions of earlier tests are still live", n)
			}
		}
		return nil
	})
}

func clientIDs(s status.Status) []string {
	var ids []string
	for _, c := range s.Clients {
		ids = append(ids, c.ClientID)
	}
	return ids
}

func TestStatusListsTwoClientsAndForgetsOneThatLeaves(t *testing.T) {
	waitNoSessions(t)
	upA, upB := newUpstream(t, "a"), newUpstream(t, "b")
	addr, _ := server(t, inletsBoth)

	cfgA := testenv.HTTPClient("ws://"+addr, "app.example.com", upA.URL, "*", upB.URL)
	cfgA.ID = "status-client-a"
	before := time.Now()
	a := testenv.Client(t, cfgA)
	cfgB := testenv.HTTPClient("ws://"+addr, "api.example.com", upB.URL+"/v1")
	cfgB.ID = "status-client-b"
	testenv.Client(t, cfgB)
	after := time.Now()

	for name, token := range map[string]string{"no token": "", "wrong token": "not-the-token"} {
		code, body := get(t, "http://"+addr+"/status", token)
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "inlets: missing or wrong token") {
			t.Errorf("/status with %s: HTTP %d %q, want 401", name, code, body)
		}
	}

	s := controlStatus(t, addr)
	host, _ := os.Hostname()
	reg := registry.Current()
	if s.Info.Version != version.Version() || s.Info.SHA != version.SHA() || s.Info.Mode != "http" ||
		s.Info.Hostname != host || !s.Info.StartTime.Equal(reg.Started()) {
		t.Errorf("info: %+v; want version %s, sha %s, mode http, hostname %s, start %s",
			s.Info, version.Version(), version.SHA(), host, reg.Started())
	}
	want := []struct {
		id        string
		upstreams []string
	}{
		{"status-client-a", []string{"app.example.com=" + upA.URL, "*=" + upB.URL}},
		{"status-client-b", []string{"api.example.com=" + upB.URL + "/v1"}},
	}
	if len(s.Clients) != len(want) {
		t.Fatalf("clients %v, want %d", clientIDs(s), len(want))
	}
	for i, w := range want {
		c := s.Clients[i]
		sessions := sessionsOf(w.id)
		if c.ClientID != w.id || !reflect.DeepEqual(c.Upstreams, w.upstreams) || c.Mode != "http" || c.Version != version.Version() {
			t.Errorf("client %d: %+v, want ID %s, upstreams %v", i, c, w.id, w.upstreams)
		}
		if len(sessions) != 1 || c.RemoteAddr != sessions[0].RemoteAddr {
			t.Errorf("client %s: remote address %q, want its session's", w.id, c.RemoteAddr)
		}
		if h, _, err := net.SplitHostPort(c.RemoteAddr); err != nil || h != "127.0.0.1" {
			t.Errorf("client %s: remote address %q is not 127.0.0.1:port", w.id, c.RemoteAddr)
		}
		if c.Since.Before(before.Truncate(time.Second)) || c.Since.After(after) {
			t.Errorf("client %s: since %s, not between %s and %s", w.id, c.Since, before, after)
		}
	}

	// The admin API says the same, without a token.
	if admin := adminStatus(t); !reflect.DeepEqual(mustJSON(t, admin), mustJSON(t, s)) {
		t.Errorf("admin API and control plane differ:\n admin %s\ncontrol %s", mustJSON(t, admin), mustJSON(t, s))
	}

	a.Stop()
	testenv.Eventually(t, 10*time.Second, func() error {
		for name, s := range map[string]status.Status{"control plane": controlStatus(t, addr), "admin API": adminStatus(t)} {
			if ids := clientIDs(s); !reflect.DeepEqual(ids, []string{"status-client-b"}) {
				return fmt.Errorf("%s lists %v after client a left", name, ids)
			}
		}
		return nil
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAdminStatusRefusesOtherMethods(t *testing.T) {
	server(t, inletsBoth)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/inlets/status", adminPort), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /inlets/status: HTTP %d, want 405", resp.StatusCode)
	}
}

// runCLI runs the status command in-process through cli.Main, and as the
// built inlets and caddy binaries, and returns each one's exit status and
// output.
func runCLI(t *testing.T, args ...string) map[string]struct {
	code           int
	stdout, stderr string
} {
	t.Helper()
	out := map[string]struct {
		code           int
		stdout, stderr string
	}{}
	var stdout, stderr bytes.Buffer
	code := cli.Main("inlets", append([]string{"status"}, args...), &stdout, &stderr)
	out["cli.Main"] = struct {
		code           int
		stdout, stderr string
	}{code, stdout.String(), stderr.String()}
	for _, bin := range [][]string{{"inlets"}, {"caddy", "inlets"}} {
		cmd := exec.Command(testenv.Binary(t, bin[0]), append(append(bin[1:], "status"), args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		out[strings.Join(bin, " ")] = struct {
			code           int
			stdout, stderr string
		}{code, stdout.String(), stderr.String()}
	}
	return out
}

func TestStatusCommandPrintsTheTableAndTheJSON(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	cfg := testenv.HTTPClient("ws://"+addr, "table.example.com", up.URL)
	cfg.ID = "status-table-client"
	testenv.Client(t, cfg)
	session := sessionsOf(cfg.ID)[0]
	host, _ := os.Hostname()
	// The session's first round trip, measured as it starts, is in the
	// table's RTT column.
	testenv.Eventually(t, 5*time.Second, func() error {
		if session.RTT() == 0 {
			return fmt.Errorf("no round-trip time measured yet")
		}
		return nil
	})
	rtt := regexp.MustCompile(` [0-9]+(\.[0-9])?ms `)

	for how, r := range runCLI(t, "--url", "ws://"+addr, "--token", testenv.Token) {
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%s status: exit %d, stderr %q", how, r.code, r.stderr)
			continue
		}
		lines := strings.Split(r.stdout, "\n")
		for _, want := range []string{
			"Server info:",
			"Hostname: " + host,
			"Mode:     http",
			"Version:  " + version.Version(),
			"Connected clients:",
		} {
			if !contains(lines, want) {
				t.Errorf("%s status: no line %q in\n%s", how, want, r.stdout)
			}
		}
		var header, row string
		for i, l := range lines {
			if strings.HasPrefix(l, "Client ID ") && i+1 < len(lines) {
				header = l
			}
			if strings.HasPrefix(l, cfg.ID+" ") {
				row = l
			}
		}
		if f := strings.Fields(header); !reflect.DeepEqual(f, []string{"Client", "ID", "Remote", "Address", "Connected", "RTT", "Upstreams"}) {
			t.Errorf("%s status: header %q", how, header)
		}
		if !rtt.MatchString(row) {
			t.Errorf("%s status: no round-trip time in the client row %q", how, row)
		}
		// The client connected moments ago: "now" or "N seconds".
		if !strings.Contains(row, " "+session.RemoteAddr+" ") || !strings.HasSuffix(row, " table.example.com="+up.URL) ||
			!(strings.Contains(row, " now ") || strings.Contains(row, " seconds ") || strings.Contains(row, " second ")) {
			t.Errorf("%s status: client row %q", how, row)
		}
		if !strings.HasPrefix(lines[2], "Started:  ") {
			t.Errorf("%s status: line 3 %q", how, lines[2])
		}
	}

	for how, r := range runCLI(t, "--url", "http://"+addr+"/connect", "--token", testenv.Token, "--json") {
		var s status.Status
		if err := json.Unmarshal([]byte(r.stdout), &s); r.code != 0 || err != nil {
			t.Errorf("%s status --json: exit %d, %v: %q", how, r.code, err, r.stdout)
			continue
		}
		if !contains(clientIDs(s), cfg.ID) || s.Info.Mode != "http" {
			t.Errorf("%s status --json: %+v", how, s)
		}
		for _, c := range s.Clients {
			if c.ClientID == cfg.ID && (c.RTTMillis <= 0 || c.RTTMillis > 1000) {
				t.Errorf("%s status --json: rttMs %v for a client on loopback", how, c.RTTMillis)
			}
		}
	}

	tokenFile := t.TempDir() + "/token"
	os.WriteFile(tokenFile, []byte(testenv.Token+"\n"), 0o600)
	for how, r := range runCLI(t, "--url", "ws://"+addr, "--token-file", tokenFile) {
		if r.code != 0 || !strings.Contains(r.stdout, cfg.ID) {
			t.Errorf("%s status --token-file: exit %d, %q %q", how, r.code, r.stdout, r.stderr)
		}
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func TestStatusCommandErrorsAreOneLine(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/page/status" {
			fmt.Fprintln(w, "<html><body>Welcome</body></html>")
			return
		}
		http.NotFound(w, r)
	}))
	defer other.Close()
	closed := testenv.FreePort(t)

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong token", []string{"--url", "ws://" + addr, "--token", "wrong"},
			"http://" + addr + "/status refused the token (HTTP 401): give the server's token with --token or --token-file"},
		{"refused connection", []string{"--url", fmt.Sprintf("ws://127.0.0.1:%d", closed), "--token", "t"},
			fmt.Sprintf("cannot reach http://127.0.0.1:%d/status: dial tcp 127.0.0.1:%d: connect: connection refused", closed, closed)},
		{"not inlets (404)", []string{"--url", other.URL, "--token", "t"},
			other.URL + "/status is not an inlets control plane: it answered HTTP 404"},
		{"not inlets (a web page)", []string{"--url", other.URL + "/page", "--token", "t"},
			other.URL + "/page/status is not an inlets control plane: its answer is not inlets status JSON"},
		{"no token", []string{"--url", "ws://" + addr}, "a token is required"},
	} {
		for how, r := range runCLI(t, tt.args...) {
			prefix := "inlets status: "
			if how == "caddy inlets" {
				prefix = "caddy inlets status: "
			}
			if r.code == 0 || r.stdout != "" || !strings.HasPrefix(r.stderr, prefix) ||
				!strings.Contains(r.stderr, tt.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("%s, %s: exit %d, stdout %q, stderr %q; want a non-zero exit and one line with %q",
					tt.name, how, r.code, r.stdout, r.stderr, tt.want)
			}
		}
	}
}
