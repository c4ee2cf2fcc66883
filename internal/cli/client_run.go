package cli

// `inlets client --config FILE`: runs the tunnels of a config file (see
// clientfile.go) and follows the file's changes without dropping what did
// not change.
//
// A session has one mode, so the file's HTTP tunnels are one client's and
// its layer-4 tunnels (TCP and UDP ports, TLS names) another's, each with
// a session to every server: at most two sessions per server.
//
// A reload (SIGHUP, or the file's content changed) parses and checks the
// new file first; a file with a mistake changes nothing. Then, for each
// mode (see planReload): an unchanged config keeps its client, sessions and
// streams; a changed one is replaced make before break: the new client
// starts, and is given up to sessionsWait to have a session to every
// server the old one has one to. If it does not (a server refuses it: a
// port it does not allow; or cannot be reached), it stops, and the last
// good configuration runs on, as for a file with a mistake. Otherwise the
// old one drains (its servers route nothing new to its sessions; their
// open streams go on) up to drain-timeout, and stops.

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

const (
	// pollInterval is how often the file is read and compared with what
	// was read last: its content, not its modification time or inotify
	// events, so that an editor's rename-on-save and a Kubernetes
	// ConfigMap's symlink swap are seen alike.
	pollInterval = time.Second
	// sessionsWait bounds how long a new client is given to have a
	// session to every server the one it replaces has one to: past it,
	// the reload is given up, and the old one serves on.
	sessionsWait = 15 * time.Second
)

// clientFileHelp is the help of `inlets client`. Its example file is
// checked by TestHelpExampleFileIsGood.
var clientFileHelp = struct{ synopsis, about, examples string }{
	synopsis: "--config FILE [--check]",
	about: `Runs the tunnels of a config file: HTTP hosts, TCP and UDP ports and TLS names
together, to one server or the servers of a fleet (one client for the HTTP
tunnels and one for the others, each with a session to every server). The file
is YAML; its keys are the flags of 'http client' and 'tcp client'; relative
paths in it are relative to its directory. max-unread bounds each of the two
clients.

The file is read again on SIGHUP, and when its content, or that of its
token-file or tls-ca, changes (checked every second). A file with a mistake
changes nothing: FILE:LINE and the fix are logged, and the last good
configuration keeps running. Otherwise the kind of tunnels whose settings are
unchanged keeps its client, sessions and connections; one that changed gets a
new client, which connects first (when a server refuses it, or it cannot
reach one the old one serves within 15s, the reload is given up); then the old
one takes no new visitors, serves its open connections for up to drain-timeout
(default 10m), and stops.
The client stops on SIGINT or SIGTERM.`,
	examples: `  %[1]s --config /etc/inlets/client.yaml
  %[1]s --config ./client.yaml --check

A config file:

  url: wss://tunnel.example.com     # or a list: the servers of a fleet
  token-file: token                 # or token-env: VARIABLE, or token: TOKEN
  http:                             # each is an --upstream HOST=URL of 'http client'
    - host: app.example.com
      upstream: http://127.0.0.1:3000
    - host: "*.dev.example.com"     # quote a value that starts with *
      upstream: http://127.0.0.1:8080
  tcp:                              # each is the --upstream HOST of a 'tcp client'
    - upstream: 192.168.0.10        # with its --ports, --udp-ports and --sni
      ports: 2222:22,8000-8010
    - upstream: 192.168.0.11
      udp-ports: 51820
      sni: db.example.com=5432
  # also: tls-ca, insecure-skip-verify, id, peer, max-streams, max-unread,
  # upstream-insecure-skip-verify, drain-timeout`,
}

// runClientFile is `inlets client`.
func runClientFile(name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the config `FILE` (YAML): the servers, the token and the tunnels; see below")
	check := fs.Bool("check", false, "check FILE as running it would (its values, its token file and CA, its tunnels), print what it holds and exit: 0 when it is good, 2 when not")
	refused := refuseFlags(fs)
	setUsage(fs, clientFileHelp.synopsis, clientFileHelp.about, clientFileHelp.examples, "config")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	program := strings.TrimSuffix(name, " client")
	if len(*refused) > 0 {
		keys := make([]string, len(*refused))
		for i, f := range *refused {
			keys[i] = strings.TrimPrefix(f, "--") + ":"
		}
		fmt.Fprintf(stderr, "%s: %s: with --config, the tunnels' settings are in FILE, as %s (its keys are the flags' names); '%s http client' and '%s tcp client' take flags\n",
			name, strings.Join(*refused, ", "), strings.Join(keys, ", "), program, program)
		return 2
	}
	if *path == "" {
		fmt.Fprintf(stderr, "%s: --config FILE is required (run '%s --help' for the file's format); '%s http client' and '%s tcp client' run a tunnel from flags alone\n", name, name, program, program)
		return 2
	}
	f, err := loadClientFile(*path)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", name, line)
		}
		return 2
	}
	if *check {
		fmt.Fprintln(stdout, f.summary())
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	r := newFileRunner(ctx, *path, slog.New(slog.NewTextHandler(stderr, nil)))
	return r.run(f, hup)
}

// refuseFlags registers on fs, without help, the flags of `inlets http
// client` and `inlets tcp client`, so that `inlets client` names them
// with the fix rather than calling them unknown. It returns the flags
// given, in order, each once.
func refuseFlags(fs *flag.FlagSet) *[]string {
	var given []string
	scratch := flag.NewFlagSet("", flag.ContinueOnError)
	var common clientFlags
	common.register(scratch, tunnel.ModeHTTP)
	var tunnels tunnelFlags
	tunnels.register(scratch, tunnel.ModeTCP)
	scratch.VisitAll(func(f *flag.Flag) {
		refuse := func(string) error {
			if !slices.Contains(given, "--"+f.Name) {
				given = append(given, "--"+f.Name)
			}
			return nil
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			fs.BoolFunc(f.Name, "", refuse)
		} else {
			fs.Func(f.Name, "", refuse)
		}
	})
	return &given
}

// fileRunner runs the clients of a config file, one per mode, and applies
// the file's reloads. It owns every goroutine it starts (each client's
// Run, and each retirement of a replaced client): stop ends them all.
// Its methods but stop's goroutines are called from one goroutine, run's.
type fileRunner struct {
	// ctx ends when the runner stops; every client's Run context and
	// every retirement derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	path   string
	logger *slog.Logger
	// good is the configuration running: the last good file.
	good *clientFile
	// clients are the clients running good, by mode.
	clients map[string]*runningClient
	// retiring counts the goroutines retiring replaced clients.
	retiring sync.WaitGroup
	// exited has the error of a client's Run that returned before the
	// client was stopped.
	exited chan error

	// id is the client ID of a file that gives none: one for the
	// process, its clients of both modes and their successors, so that
	// the servers' status shows one client across reloads.
	id string

	pollInterval, sessionsWait time.Duration
	// setMemoryLimit is limitMemory; tests leave the process's alone.
	setMemoryLimit func(maxUnread int64)
	// budgetMu guards the max-unread budgets the memory limit adds up:
	// the running clients', and those of the clients still draining.
	budgetMu                      sync.Mutex
	runningBudget, retiringBudget int64
}

// runningClient is a client and the Run it owns.
type runningClient struct {
	// cfg is the config the client was made from, as the file gave it.
	cfg    *client.Config
	client *client.Client
	cancel context.CancelFunc
	// done is closed when Run has returned.
	done chan struct{}
}

// stop ends the client's Run and waits for it to return.
func (rc *runningClient) stop() {
	rc.cancel()
	<-rc.done
}

func newFileRunner(parent context.Context, path string, logger *slog.Logger) *fileRunner {
	ctx, cancel := context.WithCancel(parent)
	return &fileRunner{
		ctx:            ctx,
		cancel:         cancel,
		path:           path,
		logger:         logger,
		clients:        map[string]*runningClient{},
		exited:         make(chan error, 1),
		id:             rand.Text(),
		pollInterval:   pollInterval,
		sessionsWait:   sessionsWait,
		setMemoryLimit: limitMemory,
	}
}

// run starts the clients of first, the file as loaded, and follows the
// file: on hup and when it changes. It returns the exit status once the
// runner's context has ended (SIGINT, SIGTERM) and every client stopped:
// 0, or 1 when a client could not run.
func (r *fileRunner) run(first *clientFile, hup <-chan os.Signal) int {
	defer r.stop()
	if _, err := r.apply(first); err != nil {
		r.logger.Error("starting the tunnels of "+r.path+" failed", "error", err)
		return 1
	}
	r.logger.Info("running the tunnels of "+r.path, "tunnels", strings.Join(first.counts(), ", "), "servers", first.servers)
	last := r.fingerprint()
	reload := func(why string) {
		watched := r.good.watched
		r.reload(why)
		if !slices.Equal(watched, r.good.watched) {
			// The new file names other files to watch.
			last = r.fingerprint()
		}
	}
	tick := time.NewTicker(r.pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			r.stop()
			r.logger.Info("stopped")
			return 0
		case err := <-r.exited:
			r.logger.Error("a client stopped on its own; stopping the others", "error", err)
			return 1
		case <-hup:
			last = r.fingerprint()
			reload("SIGHUP")
		case <-tick.C:
			if now := r.fingerprint(); now != last {
				last = now
				reload("the file changed")
			}
		}
	}
}

// fingerprint is a hash of the file's content and of the files it names
// (token-file, tls-ca), or of the errors reading them.
func (r *fileRunner) fingerprint() [sha256.Size]byte {
	h := sha256.New()
	for _, name := range append([]string{r.path}, r.good.watched...) {
		data, err := readClientFile(name)
		fmt.Fprintf(h, "%q %d %v\n", name, len(data), err)
		h.Write(data)
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// reload loads the file again and applies it, or logs why not and keeps
// the configuration running.
func (r *fileRunner) reload(why string) {
	next, err := loadClientFile(r.path)
	if err != nil {
		r.logger.Error(strings.ReplaceAll(err.Error(), "\n", "; ")+"; keeping the last good configuration", "reload", why)
		return
	}
	summary, err := r.apply(next)
	if err != nil {
		r.logger.Error("reloading "+r.path+": "+err.Error()+"; keeping the last good configuration", "reload", why)
		return
	}
	r.logger.Info("reloaded "+r.path+": "+summary, "reload", why)
}

// apply makes the clients run next, as planReload decides, and returns
// the plan in words. The new clients start first: when one cannot, those
// started are stopped and nothing changes.
func (r *fileRunner) apply(next *clientFile) (string, error) {
	plan := planReload(r.good, next)
	started := map[string]*runningClient{}
	for _, ch := range plan {
		if ch.action != startClient && ch.action != replaceClient {
			continue
		}
		rc, err := r.start(ch.label, ch.new)
		if err != nil {
			for _, s := range started {
				s.stop()
			}
			return "", fmt.Errorf("the %s client: %w", ch.label, err)
		}
		started[ch.mode] = rc
	}
	// Make before break: a replaced client retires only once its
	// successor serves every server it serves.
	for _, ch := range plan {
		if ch.action != replaceClient {
			continue
		}
		if err := r.awaitSuccessor(r.clients[ch.mode], started[ch.mode]); err != nil {
			for _, s := range started {
				s.stop()
			}
			return "", fmt.Errorf("the new %s client %w", ch.label, err)
		}
	}
	for _, ch := range plan {
		old := r.clients[ch.mode]
		switch ch.action {
		case startClient:
			r.clients[ch.mode] = started[ch.mode]
		case replaceClient:
			r.clients[ch.mode] = started[ch.mode]
			r.retire(ch.label, old, started[ch.mode], next)
		case stopClient:
			delete(r.clients, ch.mode)
			r.retire(ch.label, old, nil, next)
		}
	}
	r.good = next
	var budget int64
	for _, cfg := range next.configs {
		budget += cmp.Or(cfg.MaxUnread, client.DefaultMaxUnread)
	}
	r.budget(func() { r.runningBudget = budget })
	return describePlan(plan), nil
}

// budget changes the budgets with change, and sets the process's memory
// limit to what the clients running and draining may hold together.
func (r *fileRunner) budget(change func()) {
	r.budgetMu.Lock()
	defer r.budgetMu.Unlock()
	change()
	r.setMemoryLimit(r.runningBudget + r.retiringBudget)
}

// start makes a client of cfg and runs it until it is stopped.
func (r *fileRunner) start(label string, cfg *client.Config) (*runningClient, error) {
	run := *cfg
	run.Logger = r.logger.With("tunnels", label)
	if run.ID == "" {
		run.ID = r.id
	}
	c, err := client.New(run)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	rc := &runningClient{cfg: cfg, client: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rc.done)
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			select {
			case r.exited <- fmt.Errorf("the %s client: %w", label, err):
			default:
			}
		}
	}()
	return rc, nil
}

// retire stops old in the background: it drains for up to next's
// drain-timeout, then stops. successor, nil when the mode is gone, has
// its sessions already (see awaitSuccessor).
func (r *fileRunner) retire(label string, old, successor *runningClient, next *clientFile) {
	logger := r.logger.With("tunnels", label)
	// What it holds stays in the memory limit until it has stopped.
	held := cmp.Or(old.cfg.MaxUnread, client.DefaultMaxUnread)
	r.budget(func() { r.retiringBudget += held })
	r.retiring.Go(func() {
		ctx, cancel := context.WithTimeout(r.ctx, next.drainTimeout)
		old.client.Drain(ctx)
		drained := ctx.Err() == nil
		cancel()
		old.stop()
		r.budget(func() { r.retiringBudget -= held })
		switch {
		case r.ctx.Err() != nil:
		case drained:
			logger.Info("retired the previous client: its open streams ended")
		default:
			logger.Info("retired the previous client: drain-timeout passed, and its open streams were closed", "drain_timeout", next.drainTimeout)
		}
	})
}

// awaitSuccessor waits, at most sessionsWait, until successor has a
// session to every server that old has one to now, and says what is
// missing otherwise: a server that refuses the new configuration (a port
// it does not allow), or cannot be reached by it, must not lose the
// tunnels the old one serves it.
func (r *fileRunner) awaitSuccessor(old, successor *runningClient) error {
	deadline := time.NewTimer(r.sessionsWait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// Its servers are listed once it has resolved their names; a
		// client with no session has nothing to lose.
		now, next := old.client.Servers(), successor.client.Servers()
		missing := missingServers(now, next)
		if !slices.Contains(slices.Collect(maps.Values(now)), true) || len(next) > 0 && len(missing) == 0 {
			return nil
		}
		if rej := successor.client.Refused(); rej != nil {
			return fmt.Errorf("was refused by a server: %v", rej)
		}
		select {
		case <-tick.C:
			continue
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-deadline.C:
		}
		return fmt.Errorf("has no session, after %s, to %s, which the running one serves", r.sessionsWait, strings.Join(missing, ", "))
	}
}

// missingServers lists the servers up in old (Client.Servers) that next
// dials too and has no session to.
func missingServers(old, next map[string]bool) []string {
	var missing []string
	for srv, up := range old {
		if nextUp, dialled := next[srv]; up && dialled && !nextUp {
			missing = append(missing, srv)
		}
	}
	slices.Sort(missing)
	return missing
}

// stop ends every client and retirement, and waits for them.
func (r *fileRunner) stop() {
	r.cancel()
	for mode, rc := range r.clients {
		rc.stop()
		delete(r.clients, mode)
	}
	r.retiring.Wait()
}
