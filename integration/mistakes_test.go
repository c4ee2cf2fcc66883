package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// runBinary runs one of the built commands to its end and returns its exit
// status and output.
func runBinary(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t, name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), stdout.String(), stderr.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, stdout.String(), stderr.String()
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s %s did not end", name, strings.Join(args, " "))
		return 0, "", ""
	}
}

// Each newcomer's mistake with the client's command line ends the command
// with a non-zero status and one line that names the fix.
func TestClientCommandLineMistakesNameTheFix(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"http", "client", "--url", "127.0.0.1:8123", "--token", "t", "--upstream", "http://127.0.0.1:3000"}, 2,
			"--url 127.0.0.1:8123 has no scheme: write ws://127.0.0.1:8123, or wss://127.0.0.1:8123 for a server with HTTPS"},
		{[]string{"http", "client", "--url", "https://tunnel.example.com", "--token", "t", "--upstream", "http://127.0.0.1:3000"}, 2,
			"the client speaks WebSocket: write wss://tunnel.example.com"},
		{[]string{"tcp", "client", "--url", "ws://127.0.0.1:8123", "--token", "t", "--upstream", "http://127.0.0.1", "--ports", "2222"}, 2,
			"--upstream http://127.0.0.1: give the host alone, without http:// (TCP is relayed byte for byte): --upstream 127.0.0.1"},
		{[]string{"tcp", "client", "--url", "ws://127.0.0.1:8123", "--token", "t", "--upstream", "127.0.0.1:33000", "--ports", "2222"}, 2,
			"--upstream 127.0.0.1:33000: give the host without a port; the ports come from --ports PORT:LOCALPORT, e.g. --upstream 127.0.0.1 --ports 2222:33000"},
		{[]string{"tcp", "client", "--url", "ws://127.0.0.1:8123", "--token", "t", "--upstream", "127.0.0.1", "--ports", "8010-8000"}, 2,
			`--ports 8010-8000: "8010-8000" is not a port (1-65535) or a range FIRST-LAST such as 8000-8100`},
		{[]string{"http", "client", "--url", "ws://127.0.0.1:8123", "--upstream", "http://127.0.0.1:3000"}, 2,
			"a token is required: --token TOKEN or --token-file FILE"},
		{[]string{"http", "client", "--bogus"}, 2, "unknown flag --bogus (run 'inlets http client --help' for the flags)"},
		{[]string{"bogus"}, 2, `unknown command "bogus"; the commands are: client, http client, tcp client, status, version`},
		{[]string{"http"}, 2, "did you mean 'inlets http client'?"},
	} {
		code, stdout, stderr := runBinary(t, "inlets", tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("inlets %s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q",
				strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.want)
		}
	}
}

func TestClientHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, stdout, _ := runBinary(t, "inlets", args...)
		if code != 0 || !strings.HasPrefix(stdout, "inlets ") {
			t.Errorf("inlets %s: exit %d, %q", args[0], code, stdout)
		}
	}
	code, stdout, _ := runBinary(t, "inlets", "--help")
	if code != 0 || !strings.Contains(stdout, "Usage: inlets <command> [flags]") || !strings.Contains(stdout, "tcp client") {
		t.Errorf("inlets --help: exit %d\n%s", code, stdout)
	}
	for _, tt := range []struct {
		cmd          []string
		want, absent []string
	}{
		{[]string{"http", "client"},
			[]string{"Usage: inlets http client --url URL", "Exposes HTTP services", "Required flags:\n  --url URL\n      the server's control plane URL: ws://", "--upstream HOST=URL", "Examples:\n  inlets http client --url wss://", "--upstream-insecure-skip-verify"},
			[]string{"--ports"}},
		{[]string{"tcp", "client"},
			[]string{"Usage: inlets tcp client --url URL", "Exposes TCP and UDP ports", "Required flags:", "--ports PORTS", "8000-8010", "Examples:"},
			[]string{"--upstream-insecure-skip-verify", "https:// upstreams"}},
		{[]string{"status"},
			[]string{"Usage: inlets status --url URL", "Prints the clients", "--json", "Examples:"}, nil},
	} {
		code, stdout, stderr := runBinary(t, "inlets", append(tt.cmd, "--help")...)
		if code != 0 || stderr != "" {
			t.Errorf("inlets %s --help: exit %d, stderr %q", strings.Join(tt.cmd, " "), code, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("inlets %s --help lacks %q:\n%s", strings.Join(tt.cmd, " "), w, stdout)
			}
		}
		for _, a := range tt.absent {
			if strings.Contains(stdout, a) {
				t.Errorf("inlets %s --help has %q, which is not its:\n%s", strings.Join(tt.cmd, " "), a, stdout)
			}
		}
	}
}

// A running client that cannot connect says why and how to fix it, in
// one line of its log, for each way a newcomer gets the URL wrong.
func TestClientConnectionMistakesNameTheFix(t *testing.T) {
	notInlets := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>a web site</html>")) }))
	t.Cleanup(notInlets.Close)
	selfSigned := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(selfSigned.Close)
	addr, _ := server(t, inletsBoth)
	host := strings.TrimPrefix(selfSigned.URL, "https://")

	for _, tt := range []struct {
		url, want string
	}{
		{"ws://" + strings.TrimPrefix(notInlets.URL, "http://"), "is not an inlets control plane (it answered HTTP 200): give --url the address of the site with the inlets directive"},
		{"wss://" + host, "signed by a CA this machine does not trust: give that CA with --tls-ca FILE (or, to test only, --insecure-skip-verify)"},
		{"ws://" + host, "the server speaks HTTPS on this port: use wss:// rather than ws://"},
		{"wss://" + addr, "the server speaks plain HTTP on this port: use ws:// rather than wss://"},
	} {
		p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--url", tt.url, "--token", "t",
			"--upstream", "http://127.0.0.1:9")
		p.WaitOutput(t, 10*time.Second, tt.want)
		p.Kill()
	}

	// A refusal that retrying cannot help is said once, with the wait.
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--url", "ws://"+addr, "--token", "wrong",
		"--upstream", "http://127.0.0.1:9")
	p.WaitOutput(t, 10*time.Second, "server refuses this client, and trying again cannot help until its operator, or yours, changes something; trying every 30s meanwhile")
	p.WaitOutput(t, time.Second, "missing or wrong token: give the client the server's token with --token or --token-file")
}

// caddyAdapt adapts a Caddyfile with the built Caddy, as `caddy adapt`
// does, and validates it as `caddy validate` does.
func caddyCheck(t *testing.T, caddyfile string) (int, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runBinary(t, "caddy", "validate", "--config", file, "--adapter", "caddyfile")
	// Caddy logs the error as JSON: read it as the operator does.
	return code, strings.ReplaceAll(stdout+stderr, `\"`, `"`)
}

// Each Caddyfile mistake is refused by `caddy validate` with a message
// that says where the option belongs, or what the options are.
func TestCaddyfileMistakesNameTheFix(t *testing.T) {
	for _, tt := range []struct {
		name, caddyfile, want string
	}{
		{"tcp in a site", ":8123 {\n\tinlets {\n\t\ttoken t\n\t\ttcp {\n\t\t\tports 2222\n\t\t}\n\t}\n}\n",
			"tcp is not an option of the inlets directive: the TCP data plane is configured in the global options, `{ inlets { tcp { ports ... } } }`"},
		{"unknown option", ":8123 {\n\tinlets {\n\t\ttoken t\n\t\tallowed_hosts a.example.com\n\t}\n}\n",
			`unknown inlets option "allowed_hosts"; the options are: token, token_file, token_sha256, allow_hosts, pass_thru`},
		{"a token on the data plane", ":8123 {\n\tinlets data {\n\t\ttoken t\n\t}\n}\n",
			"token: no effect in `inlets data`, which takes no clients: these options belong with the control plane (`inlets control`, or `inlets` serving both planes)"},
		{"lb options on the control plane", ":8123 {\n\tinlets control {\n\t\ttoken t\n\t\tlb_try_duration 2s\n\t}\n}\n",
			"load_balancing (lb_*): no effect in `inlets control`, which serves no visitors"},
		{"no token", ":8123 {\n\tinlets\n}\n", "the inlets control plane needs a token"},
		{"bad port range", "{\n\tinlets {\n\t\ttcp {\n\t\t\tports 9000-8000\n\t\t}\n\t}\n}\n:8123 {\n\tinlets {\n\t\ttoken t\n\t}\n}\n",
			`"9000-8000" is not a port (1-65535) or a range FIRST-LAST such as 8000-8100`},
	} {
		code, out := caddyCheck(t, tt.caddyfile)
		if code == 0 || !strings.Contains(out, tt.want) {
			t.Errorf("%s: exit %d, output:\n%s\nwant a non-zero exit and %q", tt.name, code, out, tt.want)
		}
	}
}

// A config with a TCP data plane but no control plane, where no client
// could ever connect, loads with a warning saying so.
func TestTCPDataPlaneWithoutAControlPlaneIsWarnedAbout(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	admin := testenv.FreePort(t)
	os.WriteFile(file, []byte(fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tinlets {\n\t\ttcp {\n\t\t\tports 2222\n\t\t}\n\t}\n}\n:%d {\n\trespond ok\n}\n", admin, testenv.FreePort(t))), 0o600)
	p := testenv.Start(t, testenv.Binary(t, "caddy"), "run", "--config", file, "--adapter", "caddyfile")
	p.WaitOutput(t, 20*time.Second, "this config has a TCP data plane (the inlets global option's tcp block) but no inlets control plane")
}
