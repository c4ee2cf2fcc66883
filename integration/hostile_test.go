package integration

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
	"github.com/gorilla/websocket"
)

// endless is an upstream that answers every request, and writes to every
// TCP connection, an endless stream of bytes (1 GiB), and counts the
// connections it is writing to.
type endless struct {
	HTTP   string // host:port of the HTTP server
	TCP    string // host:port of the TCP server
	open   atomic.Int64
	active sync.Map // net.Conn -> true, the HTTP connections serving a request
	// requests counts the HTTP requests begun.
	requests atomic.Int64
}

var endlessBlock = make([]byte, 32<<10)

func newEndless(t *testing.T) *endless {
	t.Helper()
	e := new(endless)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.requests.Add(1)
			if r.URL.Path == "/forever" {
				// No end but the visitor's going away: a body that
				// no reader finishes, however fast the tunnel.
				for {
					if _, err := w.Write(endlessBlock); err != nil {
						return
					}
				}
			}
			w.Header().Set("Content-Length", strconv.Itoa(1<<30))
			for i := 0; i < 1<<30/len(endlessBlock); i++ {
				if _, err := w.Write(endlessBlock); err != nil {
					return
				}
			}
		}),
		// Only connections serving a request count: the server's
		// transport may keep a spare stream or two in its pool, whose
		// upstream connection waits for a request.
		ConnState: func(c net.Conn, s http.ConnState) {
			_, was := e.active.Load(c)
			switch {
			case s == http.StateActive && !was:
				e.active.Store(c, true)
				e.open.Add(1)
			case s != http.StateActive && was:
				e.active.Delete(c)
				e.open.Add(-1)
			}
		},
	}
	go srv.Serve(hl)
	t.Cleanup(func() { srv.Close() })
	e.HTTP = hl.Addr().String()

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			e.open.Add(1)
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer e.open.Add(-1)
				defer c.Close()
				for i := 0; i < 1<<30/len(endlessBlock); i++ {
					if _, err := c.Write(endlessBlock); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { tl.Close() })
	e.TCP = tl.Addr().String()
	return e
}

// heapInUse is Caddy's go_memstats_heap_inuse_bytes after a garbage
// collection (Caddy runs in this process).
func heapInUse(t *testing.T) float64 {
	runtime.GC()
	return adminMetrics(t).value("go_memstats_heap_inuse_bytes")
}

// abandonHTTP starts a download with a raw connection, reads some of it,
// and goes away.
func abandonHTTP(addr, host string, read int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadFull(c, make([]byte, read))
	return err
}

// abandonTCP reads some of what a tunneled port sends, and goes away.
func abandonTCP(addr string, read int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadFull(c, make([]byte, read))
	return err
}

// parallel runs n calls of f at once and fails the test if any fails.
func parallel(t *testing.T, n int, f func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// heapBackWithin waits, for at most 5s, for Caddy's heap in use to be
// within slack of base and the upstream to have no connection left open.
func heapBackWithin(t *testing.T, base, slack float64, up *endless) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, func() error {
		heap, open := heapInUse(t), up.open.Load()
		if heap > base+slack || open != 0 {
			return fmt.Errorf("heap in use %.1f MiB (baseline %.1f MiB, allowed %.0f MiB more), upstream connections still open %d",
				heap/(1<<20), base/(1<<20), slack/(1<<20), open)
		}
		return nil
	})
}

func TestAbandonedDownloadsLeaveNoMemoryOrUpstreamSockets(t *testing.T) {
	up := newEndless(t)
	srv := tcpServer(t, "ports 1-65535")
	tcpPort := testenv.FreePort(t)
	inlets := testenv.Binary(t, "inlets")
	addr := strings.TrimPrefix(srv.URL, "ws://")
	testenv.Start(t, inlets, "http", "client", "--url", srv.URL, "--token", testenv.Token,
		"--id", "big-http", "--upstream", "big.example.com=http://"+up.HTTP)
	_, upPort, _ := net.SplitHostPort(up.TCP)
	inletsTCP(t, srv.URL, "big-tcp", "--upstream", "127.0.0.1", "--ports", fmt.Sprintf("%d:%s", tcpPort, upPort))
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(sessionsOf("big-http")) == 0 || len(sessionsOf("big-tcp")) == 0 {
			return fmt.Errorf("clients not connected")
		}
		return nil
	})
	// Warm up: one of each, so that the baseline has the pools and
	// goroutines a first request starts.
	if err := abandonHTTP(addr, "big.example.com", 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := abandonTCP(fmt.Sprintf("127.0.0.1:%d", tcpPort), 64<<10); err != nil {
		t.Fatal(err)
	}
	heapBackWithin(t, math.Inf(1), 0, up)
	base := heapInUse(t)

	// 200 visitors start 1 GB downloads through the HTTP tunnel, and 50
	// through the TCP tunnel, read 256 KiB each, and leave.
	parallel(t, 200, func() error { return abandonHTTP(addr, "big.example.com", 256<<10) })
	parallel(t, 50, func() error { return abandonTCP(fmt.Sprintf("127.0.0.1:%d", tcpPort), 256<<10) })
	heapBackWithin(t, base, 32<<20, up)
}

// Visitors that never read what they asked for hold the server's memory
// only up to the bound docs/limits.md gives: per stream, twice the stream
// window (yamux's buffer, as it grows) and reverse_proxy's 32 KiB buffer.
func TestVisitorsThatReadNothingHoldAtMostTheDocumentedBound(t *testing.T) {
	up := newEndless(t)
	// The smallest window, so that the streams' bound, not max_unread's,
	// is the one reached.
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tstream_window 256KiB\n\t}")
	testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--url", "ws://"+addr, "--token", testenv.Token,
		"--id", "unread", "--upstream", "big.example.com=http://"+up.HTTP)
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(sessionsOf("unread")) == 0 {
			return fmt.Errorf("client not connected")
		}
		return nil
	})
	if err := abandonHTTP(addr, "big.example.com", 64<<10); err != nil {
		t.Fatal(err)
	}
	heapBackWithin(t, math.Inf(1), 0, up)
	base := heapInUse(t)

	const visitors = 300
	var conns []net.Conn
	for range visitors {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// A small receive buffer, as a slow phone's: the rest waits in
		// Caddy.
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: big.example.com\r\n\r\n")
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Wait until every stream is full: the upstream stops being able to
	// write, and Caddy's heap stops growing.
	bound := float64(visitors * (2*tunnel.MinStreamWindow + 32<<10))
	var last float64

	testenv.Eventually(t, 30*time.Second, func() error {
		heap := heapInUse(t)
		grew := heap - last
		last = heap
		if up.open.Load() < visitors || grew > 1<<20 {
			return fmt.Errorf("still filling: heap in use %.0f MiB, upstream connections %d", heap/(1<<20), up.open.Load())
		}
		return nil
	})
	held := last - base
	t.Logf("%d visitors that read nothing hold %.1f MiB of Caddy's heap (%.0f KiB each); the bound is %.0f MiB",
		visitors, held/(1<<20), held/visitors/1024, bound/(1<<20))
	if held > bound {
		t.Fatalf("%d visitors that read nothing hold %.0f MiB, more than the documented %.0f MiB", visitors, held/(1<<20), bound/(1<<20))
	}
	for _, c := range conns {
		c.Close()
	}
	heapBackWithin(t, base, 32<<20, up)
}

// All visitors together cannot pin more than max_unread of unread data
// (about twice that of heap): past it, the visitors who read least are
// cut, while one who reads goes on at full speed.
func TestMaxUnreadCutsTheVisitorsWhoReadLeast(t *testing.T) {
	const maxUnread = 16 << 20
	up := newEndless(t)
	addr, _ := server(t, fmt.Sprintf("inlets {\n\t\ttoken %s\n\t\tmax_unread %d\n\t}", testenv.Token, maxUnread))
	testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--url", "ws://"+addr, "--token", testenv.Token,
		"--id", "budget", "--upstream", "big.example.com=http://"+up.HTTP)
	waitSessions(t, "budget", 1)
	if err := abandonHTTP(addr, "big.example.com", 64<<10); err != nil {
		t.Fatal(err)
	}
	heapBackWithin(t, math.Inf(1), 0, up)
	base := heapInUse(t)
	begun := up.requests.Load()

	// A visitor who reads all the while.
	reader, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	fmt.Fprintf(reader, "GET /forever HTTP/1.1\r\nHost: big.example.com\r\n\r\n")
	var read atomic.Int64
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := reader.Read(buf)
			read.Add(int64(n))
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	// 100 who read nothing: up to 1 MiB each in their windows, six
	// times the budget.
	var stalled []net.Conn
	for range 100 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		stalled = append(stalled, c)
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: big.example.com\r\n\r\n")
	}
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	// Some are cut, once all have asked: their upstream connections close.
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := up.requests.Load() - begun; n < 101 {
			return fmt.Errorf("the upstream has had %d of the 101 requests", n)
		}
		if n := up.open.Load(); n > 60 {
			return fmt.Errorf("%d upstream connections still open; max_unread should have cut some of the 100 that read nothing", n)
		}
		return nil
	})
	held := heapInUse(t) - base
	t.Logf("with 100 visitors that read nothing and max_unread 16 MiB: Caddy's heap holds %.1f MiB more; %d upstream connections left", held/(1<<20), up.open.Load())
	if bound := float64(2*maxUnread + 100*(64<<10) + 16<<20); held > bound {
		t.Fatalf("Caddy's heap holds %.0f MiB more with max_unread %d MiB, over the %.0f MiB allowed", held/(1<<20), maxUnread>>20, bound/(1<<20))
	}
	// The visitor who reads was not cut: it goes on well past what one
	// window would hold (how fast depends on the machine's load).
	before := read.Load()
	testenv.Eventually(t, 60*time.Second, func() error {
		select {
		case err := <-readErr:
			t.Fatalf("the visitor who reads was cut: %v", err)
		default:
		}
		if read.Load() < before+8<<20 {
			return fmt.Errorf("the visitor who reads got %d MiB since", (read.Load()-before)>>20)
		}
		return nil
	})
}

// rssOf is the resident memory of a process, in bytes.
func rssOf(t *testing.T, pid int) float64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib * 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// 500 visitors upload to a TCP upstream that never reads. Each stream
// holds its first window in the client; 500 of them are twice the
// client's budget (--max-unread, 64 MiB by default), past which the
// streams whose upstream stopped reading longest ago are reset: the
// client's memory stays within its budget, whatever the visitors send.
func TestUploadsToAnUpstreamThatNeverReadsStayWithinTheClientsBudget(t *testing.T) {
	const visitors = 500
	const budget = client.DefaultMaxUnread
	hold := make(chan struct{})
	never := serveTCP(t, "127.0.0.1", func(c net.Conn) { <-hold })
	// Registered after the upstream's, so run before it: the upstream's
	// cleanup waits for its connections.
	t.Cleanup(func() { close(hold) })
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	_, upPort, _ := net.SplitHostPort(never.Addr())
	p := inletsTCP(t, srv.URL, "never-reads", "--upstream", "127.0.0.1", "--ports", fmt.Sprintf("%d:%s", public, upPort))
	p.WaitOutput(t, 10*time.Second, "msg=connected")
	pid := p.Cmd.Process.Pid
	base := rssOf(t, pid)

	var sent atomic.Int64
	var wg sync.WaitGroup
	for range visitors {
		wg.Go(func() {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", public))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			chunk := make([]byte, 64<<10)
			// Until the tunnel stops taking more, or cuts the visitor.
			for range 64 {
				c.SetWriteDeadline(time.Now().Add(3 * time.Second))
				n, err := c.Write(chunk)
				sent.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
	}
	most := base
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(100 * time.Millisecond):
		}
		most = max(most, rssOf(t, pid))
	}
	held := most - base
	// The budget bounds the data; the client keeps its heap within it
	// plus 64 MiB of headroom (streams' buffers, the collector's), as
	// docs/limits.md says.
	const bound = budget + 64<<20
	t.Logf("%d visitors sent %d MiB towards an upstream that never reads; the client's RSS grew by %.1f MiB at most (budget %d MiB, bound %d MiB)",
		visitors, sent.Load()>>20, held/(1<<20), budget>>20, bound>>20)
	if held > bound {
		t.Fatalf("the client's RSS grew by %.0f MiB, past its budget of %d MiB and headroom (%d MiB)", held/(1<<20), budget>>20, bound>>20)
	}
}

// A burst of visitors to a client with the smallest budget: each new
// stream holds its visitor's first bytes while the client dials the
// upstream, and is counted as what it holds, not as a window, until it is
// relayed. 64 at once, sixteen times the windows --max-unread 1MiB has
// room for, are all served, and none is cut.
func TestABurstOfNewVisitorsFitsTheSmallestClientBudget(t *testing.T) {
	const visitors = 64
	echo := serveTCP(t, "127.0.0.1", func(c net.Conn) { io.Copy(c, c) })
	public := testenv.FreePort(t)
	srv := tcpServer(t, allowPorts(public))
	_, upPort, _ := net.SplitHostPort(echo.Addr())
	p := inletsTCP(t, srv.URL, "burst", "--max-unread", "1MiB", "--upstream", "127.0.0.1", "--ports", fmt.Sprintf("%d:%s", public, upPort))
	p.WaitOutput(t, 10*time.Second, "msg=connected")

	start := make(chan struct{})
	errs := make(chan error, visitors)
	var wg sync.WaitGroup
	for i := range visitors {
		wg.Go(func() {
			<-start
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", public))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			msg := fmt.Sprintf("visitor %d says hello\n", i)
			if _, err := io.WriteString(c, msg); err != nil {
				errs <- fmt.Errorf("visitor %d: %w", i, err)
				return
			}
			got := make([]byte, len(msg))
			if n, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				errs <- fmt.Errorf("visitor %d: echoed %q, %v", i, got[:n], err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if out := p.Output(); strings.Contains(out, "reset a stream") {
		t.Errorf("the client cut streams of a burst of new visitors:\n%s", out)
	}
}

// A server (a hijacked one, or one with a bug) opens 50,000 streams at
// once and sends no header on them: the client takes --max-streams of
// them, resets the rest at once and says so, its memory stays within the
// documented bound, and a visitor's stream on the same session is served.
func TestAClientTakesAtMostMaxStreamsFromAServer(t *testing.T) {
	const flood, maxStreams = 50000, 2000
	up := newUpstream(t, "app")
	accepted := make(chan *tunnel.Session, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		sess, err := tunnel.ServerSession(tunnel.NewConn(ws, tunnel.ServerSide), tunnel.Config{})
		if err != nil {
			return
		}
		ctrl, _, protocol, err := tunnel.ReadHello(sess)
		if err != nil || tunnel.AcceptClient(ctrl, "flooder", protocol) != nil {
			sess.Close()
			return
		}
		accepted <- sess
	}))
	t.Cleanup(srv.Close)
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--url", "ws"+strings.TrimPrefix(srv.URL, "http"),
		"--token", testenv.Token, "--id", "flooded", "--max-streams", strconv.Itoa(maxStreams), "--upstream", "app.example.com="+up.URL)
	var sess *tunnel.Session
	select {
	case sess = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not connect")
	}
	t.Cleanup(func() { sess.Close() })
	pid := p.Cmd.Process.Pid
	base := rssOf(t, pid)

	var streams []*tunnel.Stream
	for range flood {
		st, err := sess.Open(context.Background())
		if err != nil {
			t.Fatalf("opening stream %d: %v", len(streams), err)
		}
		streams = append(streams, st)
	}
	p.WaitOutput(t, 10*time.Second, "the server opened more streams at once than this client takes")
	held := rssOf(t, pid) - base
	t.Logf("%d streams without a header opened to a client taking %d: its RSS grew by %.1f MiB", flood, maxStreams, held/(1<<20))
	if bound := float64(maxStreams * 16 << 10); held > bound {
		t.Errorf("the client's RSS grew by %.0f MiB, past %d streams × 16 KiB = %.0f MiB", held/(1<<20), maxStreams, bound/(1<<20))
	}
	for _, st := range streams {
		st.Close()
	}

	// A visitor's stream on the same session is still served.
	next := func(refused error) (*tunnel.Session, error) {
		if refused != nil {
			return nil, refused
		}
		return sess, nil
	}
	d, err := tunnel.OpenData(context.Background(), tunnel.StreamHeader{Kind: tunnel.KindHTTP, Host: "app.example.com"}, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	io.WriteString(d, "GET /after-the-flood HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n")
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	answer, err := io.ReadAll(d)
	if err != nil || !strings.HasPrefix(string(answer), "HTTP/1.1 200 OK") || !strings.Contains(string(answer), `"path":"/after-the-flood"`) {
		t.Fatalf("a visitor after the flood: %v\n%s", err, answer)
	}
}
