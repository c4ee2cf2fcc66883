package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/freeport"
	"github.com/caddy-inlets/caddy-inlets/status"
)

// env is where one harness run keeps its processes: a temporary directory
// for configs and logs, and every process it started, so that all of them
// are stopped however the run ends.
type env struct {
	dir   string // temporary; removed by close
	bin   string // holds caddy and inlets
	self  string // this executable, for `inletsbench upstream`
	token string

	mu    sync.Mutex
	procs []*proc
	seq   int
}

func newEnv(bin string) (*env, error) {
	dir, err := os.MkdirTemp("", "inletsbench-")
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return &env{dir: dir, bin: bin, self: self, token: newToken()}, nil
}

// close stops every process still running and removes the directory,
// unless keep.
func (e *env) close(keep bool) {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	if keep {
		logf("configs and logs are in %s", e.dir)
		return
	}
	os.RemoveAll(e.dir)
}

// proc is a process the harness started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
}

// start runs bin with args, its output going to a log file in the
// temporary directory. The process is killed if the harness dies.
func (e *env) start(name, bin string, args ...string) (*proc, error) {
	e.mu.Lock()
	e.seq++
	logPath := filepath.Join(e.dir, fmt.Sprintf("%02d-%s.log", e.seq, name))
	e.mu.Unlock()
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(),
		"INLETS_TOKEN="+e.token,
		// Caddy keeps its data and config here, not in $HOME.
		"XDG_DATA_HOME="+filepath.Join(e.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(e.dir, "config"),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to exit (SIGTERM) and kills it after 10s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last lines of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// waitFor polls cond every 10ms until it returns nil, the process exits or
// timeout passes.
func (p *proc) waitFor(what string, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited while waiting for %s; its log ends:\n%s", p.name, what, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %v; %s's log ends:\n%s", what, err, p.name, p.tail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a port that was free on 127.0.0.1 a moment ago, and
// that the benchmark has not been given before (freeport.Pick).
func freePort() int {
	port, err := freeport.Pick()
	if err != nil {
		panic(err)
	}
	return port
}

// loopback is 127.0.0.1:port.
func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// canDial reports whether something listens on addr.
func canDial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// upstream is the `inletsbench upstream` process.
type upstream struct {
	*proc
	http, echo, https int // ports
}

func (e *env) startUpstream() (*upstream, error) {
	u := &upstream{http: freePort(), echo: freePort(), https: freePort()}
	p, err := e.start("upstream", e.self, "upstream",
		"--http", fmt.Sprintf("127.0.0.1:%d", u.http), "--echo", fmt.Sprintf("127.0.0.1:%d", u.echo),
		"--https", fmt.Sprintf("127.0.0.1:%d", u.https))
	if err != nil {
		return nil, err
	}
	u.proc = p
	return u, p.waitFor("the upstream", 10*time.Second, func() error {
		for _, port := range []int{u.http, u.echo, u.https} {
			if err := canDial(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
				return err
			}
		}
		return nil
	})
}

// connections is how many connections the upstream has accepted so far.
func (u *upstream) connections() (float64, error) {
	resp, err := adminClient.Get(fmt.Sprintf("http://127.0.0.1:%d/connections", u.http))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(string(b), 64)
}

// caddy is a Caddy process and the config it runs.
type caddy struct {
	*proc
	admin   string // host:port of the admin endpoint
	config  string // path of the config
	adapter string // of the config: "caddyfile", or "" for JSON
}

// caddyfile is the harness's server config: the tunnel's control plane
// and HTTP data plane on one site (as examples/single-site.Caddyfile), the
// TCP data plane on tcpPorts, and Caddy's own reverse_proxy to the
// upstream on another site, the baseline of the HTTP tunnel.
type caddyfile struct {
	admin, tunnel, proxy, upstream int
	tcpPorts, udpPorts             []int
	// globals and sites are more of the config, as they are written.
	globals, sites string
}

func (c caddyfile) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n\tgrace_period 1s\n", c.admin)
	if len(c.tcpPorts)+len(c.udpPorts) > 0 {
		list := func(ports []int) string {
			out := make([]string, len(ports))
			for i, p := range ports {
				out[i] = strconv.Itoa(p)
			}
			return strings.Join(out, " ")
		}
		fmt.Fprintf(&b, "\tinlets {\n\t\ttcp {\n\t\t\tbind 127.0.0.1\n")
		if len(c.tcpPorts) > 0 {
			fmt.Fprintf(&b, "\t\t\tports %s\n", list(c.tcpPorts))
		}
		if len(c.udpPorts) > 0 {
			fmt.Fprintf(&b, "\t\t\tudp_ports %s\n", list(c.udpPorts))
		}
		b.WriteString("\t\t}\n\t}\n")
	}
	b.WriteString(c.globals)
	b.WriteString("}\n")
	// Every client of the harness comes from 127.0.0.1, and scenario 5
	// opens 10000 streams through one: the per-address and per-client
	// limits are raised above what the scenarios need.
	fmt.Fprintf(&b, "http://:%d {\n\tbind 127.0.0.1\n\tinlets {\n\t\ttoken {env.INLETS_TOKEN}\n\t\tmax_handshakes_per_address 100000\n\t\tmax_streams_per_client 100000\n\t}\n}\n", c.tunnel)
	if c.proxy != 0 {
		fmt.Fprintf(&b, "http://:%d {\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:%d\n}\n", c.proxy, c.upstream)
	}
	b.WriteString(c.sites)
	return b.String()
}

// startCaddy writes cfg and runs Caddy with it until its admin endpoint
// answers.
func (e *env) startCaddy(cfg caddyfile) (*caddy, error) {
	return e.startCaddyNamed("Caddyfile", cfg)
}

// startCaddyNamed is startCaddy with a config file of that name, for
// scenarios that run several Caddy processes at once.
func (e *env) startCaddyNamed(name string, cfg caddyfile) (*caddy, error) {
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		return nil, err
	}
	c := &caddy{admin: fmt.Sprintf("127.0.0.1:%d", cfg.admin), config: path, adapter: "caddyfile"}
	return c, e.restartCaddy(c)
}

// startCaddyJSON writes a JSON config, whose admin endpoint is on
// 127.0.0.1:admin, to a file of its own and runs Caddy with it until the
// admin endpoint answers.
func (e *env) startCaddyJSON(admin int, cfg []byte) (*caddy, error) {
	path := filepath.Join(e.dir, fmt.Sprintf("caddy-%d.json", admin))
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, err
	}
	c := &caddy{admin: fmt.Sprintf("127.0.0.1:%d", admin), config: path}
	return c, e.restartCaddy(c)
}

// restartCaddy starts c's process (again) with its config; it returns
// once the admin endpoint answers.
func (e *env) restartCaddy(c *caddy) error {
	args := []string{"run", "--config", c.config}
	if c.adapter != "" {
		args = append(args, "--adapter", c.adapter)
	}
	p, err := e.start("caddy", filepath.Join(e.bin, "caddy"), args...)
	if err != nil {
		return err
	}
	c.proc = p
	return p.waitFor("Caddy's admin endpoint", 30*time.Second, func() error {
		_, err := c.get("/config/")
		return err
	})
}

var adminClient = &http.Client{Timeout: 30 * time.Second}

// changeClient sends config changes, each on a connection of its own:
// every config load replaces Caddy's admin server, which closes the old
// one's idle connections, so a change sent on a kept-alive connection may
// meet that close and be reset (and Go does not resend a POST, PUT or
// DELETE).
var changeClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get fetches a path of the admin endpoint.
func (c *caddy) get(path string) ([]byte, error) {
	resp, err := adminClient.Get("http://" + c.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	return body, nil
}

// change sends a JSON body to a path of the admin API that changes the
// config (POST /load, PUT or DELETE under /config/). The change is made
// even when the config it gives is the one running (Cache-Control:
// must-revalidate), so that a reload is always a reload.
func (c *caddy) change(method, path string, body []byte) error {
	req, err := http.NewRequest(method, "http://"+c.admin+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := changeClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, answer)
	}
	return nil
}

// clients counts the connected clients, from the admin status route.
func (c *caddy) clients() (int, error) {
	body, err := c.get("/inlets/status")
	if err != nil {
		return 0, err
	}
	var s status.Status
	if err := json.Unmarshal(body, &s); err != nil {
		return 0, err
	}
	return len(s.Clients), nil
}

// waitClients waits until n clients are connected.
func (c *caddy) waitClients(n int, timeout time.Duration) error {
	return c.waitFor(fmt.Sprintf("%d connected clients", n), timeout, func() error {
		got, err := c.clients()
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d clients connected, want %d", got, n)
		}
		return nil
	})
}

// memory is a sample of Caddy's memory and goroutines.
type memory struct {
	rss        float64 // bytes, VmRSS
	heapInuse  float64 // bytes, go_memstats_heap_inuse_bytes
	stackInuse float64 // bytes, go_memstats_stack_inuse_bytes
	goroutines float64
}

// sample reads Caddy's VmRSS, heap in use and goroutine count, after
// having Caddy collect its garbage: its admin endpoint's heap profile
// runs runtime.GC first when asked with gc=1. The heap then holds what is
// live; RSS does not shrink at once (the runtime returns freed pages to
// the system gradually), so it stays the conservative figure.
func (c *caddy) sample() (memory, error) {
	var m memory
	if _, err := c.get("/debug/pprof/heap?gc=1"); err != nil {
		return m, err
	}
	var err error
	if m.rss, err = vmRSS(c.pid()); err != nil {
		return m, err
	}
	metrics, err := c.get("/metrics")
	if err != nil {
		return m, err
	}
	if m.heapInuse, err = metricValue(string(metrics), "go_memstats_heap_inuse_bytes"); err != nil {
		return m, err
	}
	if m.stackInuse, err = metricValue(string(metrics), "go_memstats_stack_inuse_bytes"); err != nil {
		return m, err
	}
	prof, err := c.get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return m, err
	}
	m.goroutines, err = goroutineTotal(string(prof))
	return m, err
}

// settledSample takes n samples a second apart and returns the median of
// each figure.
func (c *caddy) settledSample(n int) (memory, error) {
	var ms []memory
	for i := range n {
		if i > 0 {
			time.Sleep(time.Second)
		}
		m, err := c.sample()
		if err != nil {
			return memory{}, err
		}
		ms = append(ms, m)
	}
	return medianMemory(ms), nil
}

// medianMemory is the median of each figure.
func medianMemory(ms []memory) memory {
	return memory{
		rss:        median(pick(ms, func(m memory) float64 { return m.rss })),
		heapInuse:  median(pick(ms, func(m memory) float64 { return m.heapInuse })),
		stackInuse: median(pick(ms, func(m memory) float64 { return m.stackInuse })),
		goroutines: median(pick(ms, func(m memory) float64 { return m.goroutines })),
	}
}

// vmRSS reads a process's resident set size, in bytes.
func vmRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// metricValue finds a sample in a Prometheus text exposition: name is the
// metric name with its labels as written, e.g. `x{port="80"}`.
func metricValue(text, name string) (float64, error) {
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// goroutineTotal reads the count from a goroutine profile in debug=1 form,
// whose first line is "goroutine profile: total N".
func goroutineTotal(profile string) (float64, error) {
	first, _, _ := strings.Cut(profile, "\n")
	n, ok := strings.CutPrefix(first, "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("not a goroutine profile: %q", first)
	}
	return strconv.ParseFloat(n, 64)
}

// httpClientProc runs `inlets http client` for host → the upstream, with
// the server's token, connected to the tunnel site on tunnelPort.
func (e *env) httpClientProc(tunnelPort int, host string, up *upstream) (*proc, error) {
	return e.httpClientProcAs(loopback(tunnelPort), e.token, up, host)
}

// httpClientProcAs is httpClientProc presenting token (a tunnel's, say)
// to the tunnel site at server, host:port, for each of hosts.
func (e *env) httpClientProcAs(server, token string, up *upstream, hosts ...string) (*proc, error) {
	upstreams := make([]string, len(hosts))
	for i, host := range hosts {
		upstreams[i] = fmt.Sprintf("%s=http://127.0.0.1:%d", host, up.http)
	}
	return e.httpClientProcWith(server, token, upstreams...)
}

// httpClientProcWith runs `inlets http client` presenting token to the
// tunnel site at server, host:port, with upstreams, each HOST=URL as the
// client's --upstream takes them (h2c://, say).
func (e *env) httpClientProcWith(server, token string, upstreams ...string) (*proc, error) {
	return e.start("http-client", filepath.Join(e.bin, "inlets"), "http", "client",
		"--url", "ws://"+server, "--token", token, "--id", "bench-http",
		"--upstream", strings.Join(upstreams, ","))
}

// tcpClientProc runs `inlets tcp client`, connected to the tunnel site at
// server (host:port), serving each public port from the local port it
// maps to on 127.0.0.1, with more flags (--sni, say).
func (e *env) tcpClientProc(server string, ports map[int]int, more ...string) (*proc, error) {
	var list []string
	for pub, local := range ports {
		list = append(list, fmt.Sprintf("%d:%d", pub, local))
	}
	args := []string{"tcp", "client", "--url", "ws://" + server, "--token", e.token, "--id", "bench-tcp",
		"--upstream", "127.0.0.1", "--ports", strings.Join(list, ",")}
	return e.start("tcp-client", filepath.Join(e.bin, "inlets"), append(args, more...)...)
}

// run runs a command to its end with a timeout and returns its standard
// output and the CPU time it used; the error carries its standard error.
func run(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) || ctx.Err() != nil {
			return out, cpu, fmt.Errorf("%s %s: %w: %s%s", name, strings.Join(args, " "), err, stderr.String(), lastLines(out, 5))
		}
		return out, cpu, err
	}
	return out, cpu, nil
}

// cpuTime is the CPU time, user and system, that a process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15 (proc(5)).
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	// USER_HZ is 100 on every Linux the harness runs on.
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// busyTime is the CPU time the whole machine has spent busy: user, nice,
// system, interrupts and steal, from /proc/stat.
func busyTime() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(firstLine(string(b)))
	var ticks int64
	// cpu user nice system idle iowait irq softirq steal
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		if i < len(f) {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// cpuMeter measures the CPU time that some processes use between start
// and stop, by role ("Caddy", "upstream", ...), and the machine's.
type cpuMeter struct {
	procs map[string]*proc
	start map[string]time.Duration
	busy  time.Duration
}

// roleMachine is the machine's busy time in a cpuMeter's figures.
const roleMachine = "machine"

func newCPUMeter(procs map[string]*proc) *cpuMeter {
	m := &cpuMeter{procs: procs, start: map[string]time.Duration{}, busy: busyTime()}
	for role, p := range procs {
		m.start[role], _ = cpuTime(p.pid())
	}
	return m
}

// stop returns each process's CPU time since newCPUMeter, and the
// machine's busy time under roleMachine.
func (m *cpuMeter) stop() map[string]time.Duration {
	used := map[string]time.Duration{roleMachine: busyTime() - m.busy}
	for role, p := range m.procs {
		t, _ := cpuTime(p.pid())
		used[role] = t - m.start[role]
	}
	return used
}

// otherCPU is the machine's busy time that no measured process used:
// the kernel's network processing outside system calls (softirq), and
// anything else running on the machine, which disturbs the figures.
func otherCPU(cpu map[string]time.Duration) time.Duration {
	return max(0, cpu[roleMachine]-sumCPU(cpu))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func newToken() string { return rand.Text() }

// metric reads one sample of Caddy's metrics.
func (c *caddy) metric(name string) (float64, error) {
	text, err := c.get("/metrics")
	if err != nil {
		return 0, err
	}
	return metricValue(string(text), name)
}

// heapEvery is how often watchHeap samples.
const heapEvery = 100 * time.Millisecond

// watchHeap samples Caddy's heap in use (go_memstats_heap_inuse_bytes,
// without forcing a collection) every heapEvery until the stop function
// it returns is called; stop returns the largest sample.
func (c *caddy) watchHeap() (stop func() float64) {
	done := make(chan struct{})
	peak := make(chan float64)
	go func() {
		var most float64
		tick := time.NewTicker(heapEvery)
		defer tick.Stop()
		for {
			if v, err := c.metric("go_memstats_heap_inuse_bytes"); err == nil {
				most = max(most, v)
			}
			select {
			case <-done:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 {
		close(done)
		return <-peak
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
