package cli

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// reloadBase is a file of both modes, to vary.
const reloadBase = `url: [ws://127.0.0.1:1, ws://127.0.0.1:2]
token: one
http:
  - host: app.example.com
    upstream: http://127.0.0.1:3000
  - host: b.example.com
    upstream: http://127.0.0.1:3001
tcp:
  - upstream: 127.0.0.1
    ports: 2222:22,8000-8002
`

func mustParse(t *testing.T, content string) *clientFile {
	t.Helper()
	f, err := parseClientFile("F", []byte(content))
	if err != nil {
		t.Fatalf("%v\n%s", err, content)
	}
	return f
}

// A reload keeps the client of a mode whose config is the same, however
// the file was rewritten, and replaces, starts or stops the others.
func TestReloadPlanKeepsUnchangedModesAndReplacesChanged(t *testing.T) {
	for _, tt := range []struct {
		name     string
		old, new string
		http, l4 reloadAction
		says     string
	}{
		{"same file", reloadBase, reloadBase, keepClient, keepClient, "nothing changed"},
		{"comments, order and spelling", reloadBase,
			"# reordered\ntoken: one\ntcp:\n  - {upstream: 127.0.0.1, ports: [8000-8002, '2222:22']}\nhttp:\n  - {host: b.example.com, upstream: http://127.0.0.1:3001}\n  - {host: App.example.com, upstream: http://127.0.0.1:3000}\nurl: ws://127.0.0.1:2,ws://127.0.0.1:1\nmax-unread: 64MiB\nmax-streams: 10000\ndrain-timeout: 5s\n",
			keepClient, keepClient, "nothing changed"},
		{"a port removed", reloadBase, strings.Replace(reloadBase, "2222:22,", "", 1), keepClient, replaceClient,
			"layer-4 tunnels changed (ports 2222 removed); HTTP unchanged"},
		{"ports added and moved", reloadBase, strings.Replace(reloadBase, "2222:22,8000-8002", "2222:2200,8000-8005", 1), keepClient, replaceClient,
			"layer-4 tunnels changed (ports 8003-8005 added, ports 2222 relayed elsewhere); HTTP unchanged"},
		{"a host's upstream", reloadBase, strings.Replace(reloadBase, "3001", "4001", 1), replaceClient, keepClient,
			"HTTP tunnels changed (hosts b.example.com relayed elsewhere); layer-4 unchanged"},
		{"a host added", reloadBase, strings.Replace(reloadBase, "tcp:", "  - {host: c.example.com, upstream: http://127.0.0.1:1}\ntcp:", 1), replaceClient, keepClient,
			"HTTP tunnels changed (hosts c.example.com added); layer-4 unchanged"},
		{"the token", reloadBase, strings.Replace(reloadBase, "token: one", "token: two", 1), replaceClient, replaceClient,
			"HTTP tunnels changed (token changed); layer-4 tunnels changed (token changed)"},
		{"a server added", reloadBase, strings.Replace(reloadBase, "ws://127.0.0.1:2]", "ws://127.0.0.1:2, ws://127.0.0.1:3]", 1), replaceClient, replaceClient,
			"HTTP tunnels changed (servers ws://127.0.0.1:3 added); layer-4 tunnels changed (servers ws://127.0.0.1:3 added)"},
		{"upstream TLS is the HTTP client's", reloadBase, reloadBase + "upstream-insecure-skip-verify: true\n", replaceClient, keepClient,
			"HTTP tunnels changed (upstream TLS settings changed (tls-ca, upstream-insecure-skip-verify)); layer-4 unchanged"},
		{"limits", reloadBase, reloadBase + "max-streams: 10\nmax-unread: 2MiB\n", replaceClient, replaceClient,
			"HTTP tunnels changed (max-streams now 10, max-unread now 2.0 MiB); layer-4 tunnels changed (max-streams now 10, max-unread now 2.0 MiB)"},
		{"the ID", reloadBase, reloadBase + "id: homelab\n", replaceClient, replaceClient,
			`HTTP tunnels changed (id now "homelab"); layer-4 tunnels changed (id now "homelab")`},
		{"a mode removed", reloadBase, reloadBase[:strings.Index(reloadBase, "tcp:")], keepClient, stopClient,
			"layer-4 tunnels removed (4 TCP ports); HTTP unchanged"},
		{"a mode added", reloadBase[:strings.Index(reloadBase, "tcp:")], reloadBase, keepClient, startClient,
			"layer-4 tunnels added (4 TCP ports); HTTP unchanged"},
	} {
		plan := planReload(mustParse(t, tt.old), mustParse(t, tt.new))
		if plan[0].mode != tunnel.ModeHTTP || plan[0].action != tt.http || plan[1].action != tt.l4 {
			t.Errorf("%s: HTTP %v, layer-4 %v; want %v and %v (%q)", tt.name, plan[0].action, plan[1].action, tt.http, tt.l4, describePlan(plan))
		}
		if got := describePlan(plan); got != tt.says {
			t.Errorf("%s: says %q\nwant %q", tt.name, got, tt.says)
		}
	}
	if plan := planReload(nil, mustParse(t, reloadBase)); plan[0].action != startClient || plan[1].action != startClient {
		t.Errorf("the first start: %+v", plan)
	}
}

// syncBuffer is a log that tests read while the runner writes it.
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

// waitLog waits until the log holds want, and returns what follows it.
func waitLog(t *testing.T, log *syncBuffer, want string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, after, ok := strings.Cut(log.String(), want); ok {
			return after
		}
	}
	t.Fatalf("the log never said %q:\n%s", want, log.String())
	return ""
}

// testRunner is a runner of the file at path whose clients dial servers
// that are not there: it runs real clients, without a server.
func testRunner(t *testing.T, ctx context.Context, path string) (*fileRunner, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	r := newFileRunner(ctx, path, slog.New(slog.NewTextHandler(log, nil)))
	r.setMemoryLimit = func(int64) {}
	r.sessionsWait = 50 * time.Millisecond
	r.pollInterval = 20 * time.Millisecond
	t.Cleanup(r.stop)
	return r, log
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop", what)
	}
}

// A reload leaves the client of an unchanged mode running, replaces that
// of a changed one (the old one stops), keeps everything when the new
// file is bad, and stops the client of a mode the file no longer has.
func TestReloadKeepsUnchangedClientAndReplacesChanged(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "client.yaml", reloadBase)
	r, log := testRunner(t, context.Background(), path)
	first, err := loadClientFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.apply(first); err != nil {
		t.Fatal(err)
	}
	httpClient, l4Client := r.clients[tunnel.ModeHTTP], r.clients[tunnel.ModeTCP]

	writeFile(t, dir, "client.yaml", strings.Replace(reloadBase, "2222:22,", "", 1))
	r.reload("test")
	waitLog(t, log, "reloaded "+path+": layer-4 tunnels changed (ports 2222 removed); HTTP unchanged")
	if r.clients[tunnel.ModeHTTP] != httpClient {
		t.Error("the HTTP client was replaced, though its config is the same")
	}
	if r.clients[tunnel.ModeTCP] == l4Client {
		t.Fatal("the layer-4 client was kept, though its ports changed")
	}
	waitClosed(t, l4Client.done, "the replaced layer-4 client")
	waitLog(t, log, `msg="retired the previous client: its open streams ended" tunnels=layer-4`)
	if closed(httpClient.done) || closed(r.clients[tunnel.ModeTCP].done) {
		t.Fatal("a running client stopped")
	}

	running := r.clients[tunnel.ModeTCP]
	writeFile(t, dir, "client.yaml", reloadBase+"  - upstream: 127.0.0.2\n    ports: 70000\n")
	r.reload("test")
	waitLog(t, log, path+":12: ports 70000: want PORT, PORT:LOCALPORT or FIRST-LAST, each port between 1 and 65535; keeping the last good configuration")
	if r.clients[tunnel.ModeHTTP] != httpClient || r.clients[tunnel.ModeTCP] != running || r.good.configs[tunnel.ModeTCP].TCP[0].Port != 8000 {
		t.Error("a bad file changed the clients")
	}

	writeFile(t, dir, "client.yaml", reloadBase[:strings.Index(reloadBase, "tcp:")])
	r.reload("test")
	waitLog(t, log, "reloaded "+path+": layer-4 tunnels removed (3 TCP ports); HTTP unchanged")
	waitClosed(t, running.done, "the layer-4 client of a removed mode")
	if len(r.clients) != 1 || r.clients[tunnel.ModeHTTP] != httpClient {
		t.Errorf("clients %v", r.clients)
	}
	r.stop()
	if !closed(httpClient.done) {
		t.Error("stop left the HTTP client running")
	}
}

// A replaced client retires only once its successor has a session to
// every server it has one to: missingServers lists those the successor
// lacks, among the servers it dials.
func TestMissingServersAreThoseTheOldClientServesAndTheNewOneNot(t *testing.T) {
	for _, tt := range []struct {
		name      string
		old, next map[string]bool
		want      []string
	}{
		{"both up", map[string]bool{"ws://a": true, "ws://b": true}, map[string]bool{"ws://a": true, "ws://b": true}, nil},
		{"one refused", map[string]bool{"ws://a": true, "ws://b": true}, map[string]bool{"ws://a": true, "ws://b": false}, []string{"ws://b"}},
		{"down for both", map[string]bool{"ws://a": true, "ws://b": false}, map[string]bool{"ws://a": true, "ws://b": false}, nil},
		{"a server the new file drops", map[string]bool{"ws://a": true, "ws://b": true}, map[string]bool{"ws://a": true}, nil},
		{"a new server", map[string]bool{"ws://a": true}, map[string]bool{"ws://a": true, "ws://c": false}, nil},
	} {
		if got := missingServers(tt.old, tt.next); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The runner reloads when the file's content changes, however it is
// replaced (an editor's rename, a Kubernetes ConfigMap's symlink swap),
// when the token file changes, and on SIGHUP; it returns 0 when stopped.
func TestRunFollowsTheFileAndStops(t *testing.T) {
	dir := t.TempDir()
	// The layout of a ConfigMap volume: client.yaml -> ..data/client.yaml,
	// ..data -> the directory of the current version.
	os.Mkdir(filepath.Join(dir, "..v1"), 0o700)
	writeFile(t, filepath.Join(dir, "..v1"), "client.yaml", "token-file: token\n"+reloadBase[strings.Index(reloadBase, "http:"):]+"url: ws://127.0.0.1:1\n")
	writeFile(t, dir, "token", "s3cret-one")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "client.yaml")
	if err := os.Symlink(filepath.Join("..data", "client.yaml"), path); err != nil {
		t.Fatal(err)
	}
	first, err := loadClientFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, log := testRunner(t, ctx, path)
	hup := make(chan os.Signal, 1)
	exit := make(chan int)
	go func() { exit <- r.run(first, hup) }()
	waitLog(t, log, `msg="running the tunnels of `+path+`" tunnels="2 HTTP hosts, 4 TCP ports" servers=1`)

	// The symlink swap.
	os.Mkdir(filepath.Join(dir, "..v2"), 0o700)
	writeFile(t, filepath.Join(dir, "..v2"), "client.yaml", "token-file: token\n"+reloadBase[strings.Index(reloadBase, "http:"):strings.Index(reloadBase, "tcp:")]+"url: ws://127.0.0.1:1\n")
	os.Symlink("..v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "reloaded "+path+": layer-4 tunnels removed (4 TCP ports); HTTP unchanged")

	// The token file is part of the config.
	writeFile(t, dir, "token", "s3cret-two\n")
	waitLog(t, log, "reloaded "+path+": HTTP tunnels changed (token changed)")

	hup <- syscall.SIGHUP
	waitLog(t, log, `msg="reloaded `+path+`: nothing changed" reload=SIGHUP`)
	if strings.Contains(log.String(), "s3cret") {
		t.Errorf("the log shows the token:\n%s", log.String())
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 || len(r.clients) != 0 {
			t.Errorf("run returned %d with clients %v", code, r.clients)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return when stopped")
	}
}
