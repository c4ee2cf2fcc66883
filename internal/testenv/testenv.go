// Package testenv runs the real parts of caddy-inlets for tests: Caddy
// in-process through caddytest, clients in-process or as processes of the
// built binaries, and upstreams on loopback.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/freeport"
	"github.com/caddy-inlets/caddy-inlets/tunnel"

	// Caddy with this project's modules, as cmd/caddy builds it.
	_ "github.com/caddy-inlets/caddy-inlets"
)

// Token is the token test servers accept.
const Token = "test-token-0123456789"

// AdminPort is the Caddy admin port of this test binary:
// INLETS_TEST_ADMIN_PORT if set, else a port free when the binary
// starts. Each test binary that runs Caddy has its own, since `go test
// ./...` runs packages in parallel, and two runs of the suite may share
// a machine: caddytest drives whatever Caddy answers on the port.
func AdminPort() int {
	if p, err := strconv.Atoi(os.Getenv("INLETS_TEST_ADMIN_PORT")); err == nil {
		return p
	}
	port, err := freeport.Pick()
	if err != nil {
		panic(fmt.Sprintf("picking a free port for Caddy's admin API: %v", err))
	}
	return port
}

// Caddy is the in-process Caddy of a test binary.
type Caddy struct {
	*caddytest.Tester
	AdminPort int
}

// StartCaddy loads a Caddyfile into the in-process Caddy (starting it the
// first time). The Caddyfile must not have its own global options block:
// StartCaddy writes one with the admin port, no HTTP->HTTPS redirects and no
// trust-store installation, followed
// by globals (may be empty, for example "inlets { tcp { ... } }"). Sites
// on hostnames get certificates from Caddy's internal CA with `tls internal`.
func StartCaddy(t testing.TB, adminPort int, globals, sites string) *Caddy {
	t.Helper()
	tc := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          adminPort,
		TestRequestTimeout: 30 * time.Second,
		LoadRequestTimeout: 10 * time.Second,
	})
	tc.InitServer(Caddyfile(adminPort, globals, sites), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return &Caddy{Tester: tc, AdminPort: adminPort}
}

// Caddyfile assembles a Caddyfile with the test's global options.
func Caddyfile(adminPort int, globals, sites string) string {
	return fmt.Sprintf("{\n\tadmin localhost:%d\n\tauto_https disable_redirects\n\tskip_install_trust\n\tgrace_period 5s\n%s\n}\n%s\n", adminPort, globals, sites)
}

// Load posts a Caddyfile to the admin API, as `caddy reload` does, and
// returns the admin API's error, if any.
func (c *Caddy) Load(caddyfile string) error {
	return c.load("text/caddyfile", caddyfile)
}

// LoadJSON posts a JSON config to the admin API, as `caddy reload` does
// with one, and returns the admin API's error, if any.
func (c *Caddy) LoadJSON(config []byte) error {
	return c.load("application/json", string(config))
}

func (c *Caddy) load(contentType, config string) error {
	resp, err := http.Post(fmt.Sprintf("http://localhost:%d/load", c.AdminPort), contentType, strings.NewReader(config))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}

// FreePort returns a port that was free for TCP and UDP on 127.0.0.1 a
// moment ago and that this process has not been given before: see
// freeport.Pick.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Eventually polls cond every 10ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Client runs an in-process client until the test ends, and waits until
// the server has accepted it.
func Client(t testing.TB, cfg client.Config) *RunningClient {
	t.Helper()
	c := StartClient(t, cfg)
	Eventually(t, 10*time.Second, func() error {
		if !c.Connected() {
			return fmt.Errorf("client %s is not connected", c.ID())
		}
		return nil
	})
	return c
}

// RunningClient is a client running in-process.
type RunningClient struct {
	*client.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// StartClient runs an in-process client until Stop or the test's end,
// without waiting for it to connect.
func StartClient(t testing.TB, cfg client.Config) *RunningClient {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = Token
	}
	if cfg.Logger == nil {
		cfg.Logger = tLogger(t)
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &RunningClient{Client: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rc.done)
		c.Run(ctx)
	}()
	t.Cleanup(rc.Stop)
	return rc
}

// Stop stops the client and waits for it to return.
func (rc *RunningClient) Stop() {
	rc.cancel()
	<-rc.done
}

// HTTPClient returns a client config for URL serving host=upstream pairs.
func HTTPClient(url string, pairs ...string) client.Config {
	cfg := client.Config{URL: url}
	for i := 0; i+1 < len(pairs); i += 2 {
		cfg.HTTP = append(cfg.HTTP, tunnel.HTTPUpstream{Host: pairs[i], URL: pairs[i+1]})
	}
	return cfg
}

// Get sends a GET with the given Host to Caddy's address and returns the
// status and body.
func Get(t testing.TB, addr, host, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", path, host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Process is a running child process whose output is kept for assertions.
type Process struct {
	Cmd *exec.Cmd
	out *syncBuffer
}

// Output returns what the process printed so far (stdout and stderr).
func (p *Process) Output() string { return p.out.String() }

// WaitOutput waits until the process has printed substr.
func (p *Process) WaitOutput(t testing.TB, timeout time.Duration, substr string) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if !strings.Contains(p.Output(), substr) {
			return fmt.Errorf("process has not printed %q; output so far:\n%s", substr, p.Output())
		}
		return nil
	})
}

// Kill kills the process (SIGKILL) and waits for it.
func (p *Process) Kill() {
	p.Cmd.Process.Kill()
	p.Cmd.Wait()
}

// Start starts a binary with args; it is killed when the test ends.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			p.Kill()
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Output())
		}
	})
	return p
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binary returns the path of one of the project's commands ("inlets" or
// "caddy"), built once per test binary.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "inlets-test-bin")
		if buildErr != nil {
			return
		}
		root := moduleRoot()
		for _, cmd := range []string{"inlets", "caddy"} {
			build := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "./cmd/"+cmd)
			build.Dir = root
			if out, err := build.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// syncBuffer is a bytes.Buffer safe for a process's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
