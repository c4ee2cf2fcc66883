package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// counted is an upstream that counts the requests it serves.
type counted struct {
	*httptest.Server
	n atomic.Int64
}

func newCounted(t *testing.T, name string) *counted {
	c := new(counted)
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		fmt.Fprintln(w, name)
	}))
	t.Cleanup(c.Close)
	return c
}

// httpClientProcess starts the inlets binary serving host from upstream.
func httpClientProcess(t *testing.T, url, id, host, upstream string) *testenv.Process {
	t.Helper()
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--url", url, "--token", testenv.Token,
		"--id", id, "--upstream", host+"="+upstream)
	t.Cleanup(func() { p.Cmd.Process.Signal(syscall.SIGCONT) })
	return p
}

// waitSessions waits until id has n sessions.
func waitSessions(t *testing.T, id string, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := len(sessionsOf(id)); got != n {
			return fmt.Errorf("client %s has %d sessions, want %d", id, got, n)
		}
		return nil
	})
}

// heyResult is what hey printed of a run.
type heyResult struct {
	slowest  time.Duration
	ok, fail int
	output   string
}

var (
	heySlowest = regexp.MustCompile(`Slowest:\s+([0-9.]+) secs`)
	heyStatus  = regexp.MustCompile(`\[(\d{3})\]\s+(\d+) responses`)
	heyErrors  = regexp.MustCompile(`(?m)^\s+\[(\d+)\]\s+\S`)
)

func parseHey(out string) heyResult {
	r := heyResult{output: out}
	if m := heySlowest.FindStringSubmatch(out); m != nil {
		secs, _ := strconv.ParseFloat(m[1], 64)
		r.slowest = time.Duration(secs * float64(time.Second))
	}
	for _, m := range heyStatus.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "200" {
			r.ok += n
		} else {
			r.fail += n
		}
	}
	if i := strings.Index(out, "Error distribution:"); i >= 0 {
		for _, m := range heyErrors.FindAllStringSubmatch(out[i:], -1) {
			n, _ := strconv.Atoi(m[1])
			r.fail += n
		}
	}
	return r
}

// Two clients serve one host; one is frozen (SIGSTOP) while hey sends
// requests. No request waits more than 3s, at most those already in flight
// on the frozen client fail, and once thawed it serves again within 2s.
func TestFrozenClientIsPassedOverWithinSeconds(t *testing.T) {
	hey, err := exec.LookPath("hey")
	if err != nil {
		t.Skip("hey is not installed (Debian: apt-get install hey)")
	}
	upA, upB := newCounted(t, "a"), newCounted(t, "b")
	addr, _ := server(t, inletsBoth)
	httpClientProcess(t, "ws://"+addr, "frozen-a", "ha.example.com", upA.URL)
	b := httpClientProcess(t, "ws://"+addr, "frozen-b", "ha.example.com", upB.URL)
	waitSessions(t, "frozen-a", 1)
	waitSessions(t, "frozen-b", 1)

	const workers = 8
	load := exec.Command(hey, "-z", "12s", "-c", strconv.Itoa(workers), "-t", "10", "-host", "ha.example.com", "http://"+addr+"/")
	out := new(strings.Builder)
	load.Stdout, load.Stderr = out, out
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { load.Process.Kill(); load.Wait() })

	// Freeze b once it is serving its share.
	testenv.Eventually(t, 10*time.Second, func() error {
		if upB.n.Load() < 200 {
			return fmt.Errorf("b has served %d requests", upB.n.Load())
		}
		return nil
	})
	b.Cmd.Process.Signal(syscall.SIGSTOP)
	frozen := time.Now()
	servedByA := upA.n.Load()
	// a serves on alone for 4s, and b's session goes.
	testenv.Eventually(t, 10*time.Second, func() error {
		if time.Since(frozen) < 4*time.Second || upA.n.Load() < servedByA+500 {
			return fmt.Errorf("a has served %d requests since b froze", upA.n.Load()-servedByA)
		}
		return nil
	})
	if n := len(sessionsOf("frozen-b")); n != 0 {
		t.Errorf("the frozen client is still listed %s after it froze", time.Since(frozen).Round(time.Millisecond))
	}
	b.Cmd.Process.Signal(syscall.SIGCONT)
	thawed := time.Now()
	// b reconnects, and then serves: requests it took before it froze,
	// which it finds on waking, do not count.
	servedByB := int64(-1)
	testenv.Eventually(t, 5*time.Second, func() error {
		if len(sessionsOf("frozen-b")) == 0 {
			return fmt.Errorf("b has not reconnected since it was thawed")
		}
		if servedByB < 0 {
			servedByB = upB.n.Load()
		}
		if upB.n.Load() == servedByB {
			return fmt.Errorf("b has served nothing since it reconnected")
		}
		return nil
	})
	back := time.Since(thawed)
	if back > 2*time.Second {
		t.Errorf("the thawed client served again after %s, want within 2s", back.Round(time.Millisecond))
	}

	load.Wait()
	r := parseHey(out.String())
	t.Logf("hey: %d ok, %d failed, slowest %s; b served again %s after it was thawed",
		r.ok, r.fail, r.slowest.Round(time.Millisecond), back.Round(time.Millisecond))
	if r.ok == 0 || r.slowest > 3*time.Second || r.fail > workers {
		t.Fatalf("with one of two clients frozen: %d ok, %d failed (at most %d in flight), slowest %s (want at most 3s)\n%s",
			r.ok, r.fail, workers, r.slowest, r.output)
	}
}

// A client whose upstream is down gets no more visitors, once it has said
// so, while another client serves the host; when its upstream is back it
// serves again. With no other client, the visitor gets the 502 at once.
func TestClientWithItsUpstreamDownIsPassedOverUntilItIsBack(t *testing.T) {
	upA := newCounted(t, "a")
	downPort := testenv.FreePort(t)
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tfail_duration 1s\n\t}")
	httpClientProcess(t, "ws://"+addr, "health-a", "hh.example.com", upA.URL)
	b := httpClientProcess(t, "ws://"+addr, "health-b", "hh.example.com", fmt.Sprintf("http://127.0.0.1:%d", downPort))
	waitSessions(t, "health-a", 1)
	waitSessions(t, "health-b", 1)

	// 100 requests over 2s: every one is served, by a; b is tried about
	// once per fail_duration.
	for i := range 100 {
		if code, body := testenv.Get(t, addr, "hh.example.com", "/"); code != http.StatusOK || strings.TrimSpace(body) != "a" {
			t.Fatalf("request %d with b's upstream down: %d %q", i, code, body)
		}
		time.Sleep(20 * time.Millisecond) // pacing the load over fail_duration, not synchronisation
	}
	if tried := strings.Count(b.Output(), "upstream unreachable"); tried < 1 || tried > 4 {
		t.Errorf("b was asked %d times in 2s with its upstream down, want once per fail_duration (1s)", tried)
	}

	// b's upstream comes back: b serves again within fail_duration.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", downPort))
	if err != nil {
		t.Fatal(err)
	}
	var servedByB atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		servedByB.Add(1)
		fmt.Fprintln(w, "b")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	testenv.Eventually(t, 5*time.Second, func() error {
		testenv.Get(t, addr, "hh.example.com", "/")
		if servedByB.Load() == 0 {
			return fmt.Errorf("b has not served since its upstream came back")
		}
		return nil
	})

	// Alone, with its upstream down: the 502 comes at once, with the reason.
	srv.Close()
	addr2, _ := server(t, inletsBoth)
	httpClientProcess(t, "ws://"+addr2, "health-alone", "alone.example.com", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)))
	waitSessions(t, "health-alone", 1)
	start := time.Now()
	code, body := testenv.Get(t, addr2, "alone.example.com", "/")
	if code != http.StatusBadGateway || !strings.Contains(body, "the tunnel client could not reach the upstream for alone.example.com") {
		t.Fatalf("the only client, its upstream down: %d %q", code, body)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the 502 of the only client took %s, want at once", took)
	}
}

// A client whose upstream is down replies so before anything of a request
// reaches its upstream, and the request, body and all, goes to the other
// client: 200 POSTs, some of them larger than what is sent before a reply,
// all answered by the healthy client's upstream, none seen twice, none
// lost.
func TestPOSTsAreServedOnceEachBesideAClientWhoseUpstreamIsDown(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, _, _ := strings.Cut(string(body), "\n")
		mu.Lock()
		seen[id]++
		mu.Unlock()
		fmt.Fprintf(w, "%s %d", id, len(body))
	}))
	t.Cleanup(healthy.Close)
	// fail_duration as short as it goes: the client whose upstream is down
	// is offered most requests again and again.
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tfail_duration 1ms\n\t}")
	down := httpClientProcess(t, "ws://"+addr, "post-down", "post.example.com", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)))
	httpClientProcess(t, "ws://"+addr, "post-healthy", "post.example.com", healthy.URL)
	waitSessions(t, "post-down", 1)
	waitSessions(t, "post-healthy", 1)

	const posts = 200
	errs := make(chan error, posts)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range posts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("post-%d", i)
			size := 1 << 10
			if i%10 == 0 {
				size = 3 * tunnel.MaxEarlyData // past what goes before a reply
			}
			body := id + "\n" + strings.Repeat("x", size)
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(body))
			req.Host = "post.example.com"
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- fmt.Errorf("%s: %v", id, err)
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%s %d", id, len(body)); resp.StatusCode != http.StatusOK || string(got) != want {
				errs <- fmt.Errorf("%s: %d %q, want 200 %q", id, resp.StatusCode, got, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range posts {
		if id := fmt.Sprintf("post-%d", i); seen[id] != 1 {
			t.Errorf("%s reached the upstream %d times", id, seen[id])
		}
	}
	refused := strings.Count(down.Output(), "upstream unreachable")
	t.Logf("the client whose upstream is down refused %d of the %d POSTs, all of which the other one served", refused, posts)
	if refused < 10 {
		t.Errorf("the client whose upstream is down was offered %d POSTs: the test did not exercise the failover", refused)
	}
}
