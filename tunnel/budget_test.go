package tunnel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-inlets/caddy-inlets/internal/latency"
)

// budgetPair is a session pair whose server counts unread data in a
// budget of limit bytes, with its control stream open.
func budgetPair(t *testing.T, limit int64) (*Budget, *Session, *Session) {
	t.Helper()
	budget := NewBudget(limit)
	server, client := muxPairWith(t, Config{Budget: budget}, Config{})
	return budget, server, client
}

// Streams whose reader takes nothing fill their windows; once the sum
// passes the budget, those are reset, and a stream that is read goes on.
func TestBudgetCutsTheStreamsNobodyReads(t *testing.T) {
	const limit = 1 << 20 // four windows
	budget, server, client := budgetPair(t, limit)

	writeForever := func(c *Stream, cut chan<- error) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				cut <- err
				return
			}
		}
	}
	// A stream whose reader keeps up.
	sActive, cActive := streamPair(t, server, client)
	var readActive atomic.Int64
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := sActive.Read(buf)
			readActive.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	activeCut := make(chan error, 1)
	go writeForever(cActive, activeCut)

	// Eight whose reader reads nothing: twice the budget, when full.
	stalledCut := make(chan error, 8)
	for range 8 {
		_, c := streamPair(t, server, client)
		go writeForever(c, stalledCut)
	}
	cut := 0
	deadline := time.After(10 * time.Second)
	for cut < 4 {
		select {
		case err := <-stalledCut:
			if !errors.Is(err, ErrStreamReset) {
				t.Fatalf("a stalled stream ended with %v, want a reset", err)
			}
			cut++
		case err := <-activeCut:
			t.Fatalf("the stream that is read was cut: %v", err)
		case <-deadline:
			t.Fatalf("after 10s %d stalled streams were cut; budget used %d of %d", cut, budget.Used(), limit)
		}
	}
	eventually(t, "the budget is back under its limit", func() bool { return budget.Used() <= limit })
	before := readActive.Load()
	eventually(t, "the stream that is read still moves", func() bool { return readActive.Load() > before+(1<<20) })
	select {
	case err := <-activeCut:
		t.Fatalf("the stream that is read was cut: %v", err)
	default:
	}
	// Closing everything gives the budget back entirely.
	server.Close()
	eventually(t, "the budget is empty once the session ended", func() bool { return budget.Used() == 0 })
}

// wsPairOver is wsPair with the client's WebSocket through a relay that
// delays each way by oneWay: a link of twice that round trip.
func wsPairOver(t testing.TB, oneWay time.Duration) (client, server *websocket.Conn) {
	t.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		accepted <- ws
	}))
	t.Cleanup(srv.Close)
	relay, err := latency.Start(strings.TrimPrefix(srv.URL, "http://"), oneWay, oneWay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	c, _, err := (&websocket.Dialer{}).Dial("ws://"+relay.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// sessionsOver is a session pair over a link of round trip 2×oneWay, the
// server's with budget.
func sessionsOver(t *testing.T, oneWay time.Duration, budget *Budget) (server, client *Session) {
	t.Helper()
	cws, sws := wsPairOver(t, oneWay)
	server, err := ServerSession(NewConn(sws, ServerSide), Config{Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	client, err = ClientSession(NewConn(cws, ClientSide), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// download has the client write n bytes on a new stream, read by the
// server as fast as it comes, and returns how long that took.
func download(t *testing.T, server, client *Session, n int) time.Duration {
	t.Helper()
	go func() {
		st, err := client.Accept(context.Background())
		if err != nil {
			return
		}
		st.Write(make([]byte, n))
		st.CloseWrite()
	}()
	s, err := server.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte{0}) // the stream's first frame
	start := time.Now()
	s.SetReadDeadline(start.Add(60 * time.Second))
	got, err := io.Copy(io.Discard, s)
	if err != nil || got != int64(n) {
		t.Fatalf("read %d of %d bytes: %v", got, n, err)
	}
	return time.Since(start)
}

// On a link of 100 ms round trip, a fixed 256 KiB window moves at most
// 2.6 MB/s; a stream whose reader keeps up grows its window, round trip
// after round trip, well past that. What the test asks of the rate is
// only what no fixed window can do: a busy machine's CPU, not the
// window, may be what caps it.
func TestWindowGrowsWhileTheReaderKeepsUp(t *testing.T) {
	const oneWay = 50 * time.Millisecond
	budget := NewBudget(256 << 20)
	server, client := sessionsOver(t, oneWay, budget)
	eventually(t, "the first RTT measurement", func() bool { return server.RTT() > 0 && client.RTT() > 0 })
	const n = 48 << 20
	took, grown := downloadWatchingGrowth(t, server, client, n, budget)
	rate := float64(n) / took.Seconds()
	fixed := float64(MinStreamWindow) / (2 * oneWay).Seconds()
	t.Logf("%d MiB in %s: %.1f MB/s; a fixed first window allows %.1f MB/s; the window grew by %d KiB at most", n>>20, took, rate/1e6, fixed/1e6, grown>>10)
	if grown < 3*MinStreamWindow {
		t.Errorf("the window grew by %d KiB at most over a 100 ms round trip, want at least %d KiB (to 4 times the first)", grown>>10, 3*MinStreamWindow>>10)
	}
	if rate < 1.5*fixed {
		t.Errorf("%.1f MB/s over a 100 ms round trip: no faster than a fixed %d KiB window allows (%.1f MB/s)", rate/1e6, MinStreamWindow>>10, fixed/1e6)
	}
}

// downloadWatchingGrowth is download, with the most the budget's windows
// had grown while it ran.
func downloadWatchingGrowth(t *testing.T, server, client *Session, n int, budget *Budget) (took time.Duration, grown int64) {
	t.Helper()
	var most atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-done:
				return
			default:
			}
			most.Store(max(most.Load(), budget.Grown()))
			time.Sleep(time.Millisecond)
		}
	}()
	took = download(t, server, client, n)
	close(done)
	<-sampled
	return took, most.Load()
}

// A stream whose reader takes nothing keeps its first window: its writer
// gets that much through, and no more, however long it tries.
func TestStalledReaderKeepsTheFirstWindow(t *testing.T) {
	server, client := muxPair(t)
	s, c := streamPair(t, server, client)
	_ = s // the server's reader never reads
	var written atomic.Int64
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	eventually(t, "the writer fills the first window", func() bool { return written.Load() >= MinStreamWindow-1 })
	// Long enough for a window update to have come, had any been sent.
	time.Sleep(300 * time.Millisecond)
	if n := written.Load(); n > MinStreamWindow {
		t.Fatalf("the writer got %d bytes through to a reader that takes nothing, past the first window of %d", n, MinStreamWindow)
	}
}

// A window grows only as far as the budget lets it: growth stops at half
// the limit, and the stream keeps moving at the window it has.
func TestWindowGrowthStopsAtHalfTheBudget(t *testing.T) {
	const oneWay = 25 * time.Millisecond
	const limit = 4 << 20
	budget := NewBudget(limit)
	server, client := sessionsOver(t, oneWay, budget)
	eventually(t, "the first RTT measurement", func() bool { return server.RTT() > 0 && client.RTT() > 0 })
	if _, most := downloadWatchingGrowth(t, server, client, 32<<20, budget); most > limit/2 || most == 0 {
		t.Fatalf("the windows grew by %d KiB at most, want some, and at most half the budget, %d KiB", most>>10, limit/2>>10)
	}
}

// A burst of new streams whose readers have not started yet is counted,
// and over the limit, but holds nothing: none is cut, since cutting would
// free nothing; the one that then receives data nobody reads is.
func TestBudgetCutsOnlyStreamsThatHoldData(t *testing.T) {
	const limit = 1 << 20 // four streams' first windows
	budget, server, client := budgetPair(t, limit)
	var quiet []*Stream
	var peers []*Stream
	for range 10 {
		s, c := streamPair(t, server, client) // the server reads nothing from here on
		quiet, peers = append(quiet, s), append(peers, c)
	}
	// Waiting is what is tested: several graces over the limit.
	time.Sleep(4 * Grace)
	for i, c := range peers {
		if _, err := c.Write([]byte("y")); err != nil {
			t.Fatalf("stream %d holding nothing was cut: %v", i, err)
		}
		buf := make([]byte, 1)
		quiet[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(quiet[i], buf); err != nil || buf[0] != 'y' {
			t.Fatalf("stream %d holding nothing: read %q, %v", i, buf, err)
		}
	}
	// One that receives more than a window's worth while its reader is
	// away is cut.
	cut := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := peers[0].Write(buf); err != nil {
				cut <- err
				return
			}
		}
	}()
	select {
	case <-cut:
	case <-time.After(10 * time.Second):
		t.Fatalf("a stream holding data nobody reads, over the budget (%d of %d), was not cut", budget.Used(), limit)
	}
}

// clientBudgetPair is a session pair whose client counts unread data in a
// budget of limit bytes, as a tunnel client does (--max-unread).
func clientBudgetPair(t *testing.T, limit int64) (*Budget, *Session, *Session) {
	t.Helper()
	budget := NewBudget(limit)
	server, client := muxPairWith(t, Config{}, Config{Budget: budget})
	return budget, server, client
}

// acceptSetUp opens n streams from the server's side, each carrying
// early bytes behind a 1-byte "header", and accepts them on the client's,
// reading the header only: n streams being set up, as while a client
// dials their upstreams.
func acceptSetUp(t *testing.T, server, client *Session, n, early int) (peers, streams []*Stream) {
	t.Helper()
	for i := range n {
		s, err := server.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, 1+early)
		msg[0], msg[len(msg)-1] = byte(i), 'e'
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		c, err := client.Accept(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg[:1]); err != nil || msg[0] != byte(i) {
			t.Fatalf("stream %d's header: %v, %v", i, msg[0], err)
		}
		peers, streams = append(peers, s), append(streams, c)
	}
	return peers, streams
}

// A burst of new streams, each holding a visitor's first few bytes while
// the client dials its upstream, is pending, not exposed: ten times as
// many as the budget has windows for, set up for several graces, lose
// nothing. (When each counted a window, the budget cut them.)
func TestBudgetSparesABurstOfStreamsBeingSetUp(t *testing.T) {
	const limit = 1 << 20 // four windows
	const streams, early = 40, 500
	budget, server, client := clientBudgetPair(t, limit)
	_, set := acceptSetUp(t, server, client, streams, early)
	if got, want := budget.Used(), int64(streams*MaxEarlyData); got != want {
		t.Fatalf("budget used %d while %d streams are set up, want %d (MaxEarlyData each)", got, streams, want)
	}
	// Waiting is what is tested: several graces over the limit, while a
	// sweep looks.
	time.Sleep(4 * Grace)
	for i, c := range set {
		if c.closed.Load() {
			t.Fatalf("stream %d being set up was cut", i)
		}
	}
	replyAndReadEarly(t, budget, set, early)
	eventually(t, "the budget counts none of them pending once relayed", func() bool { return budget.pending.Load() == 0 })
	for _, c := range set {
		c.Close()
	}
	eventually(t, "the budget is empty once they closed", func() bool { return budget.Used() == 0 })
}

// Streams being set up count as what they hold: visitors who each send
// MaxEarlyData while the upstream is slow to answer are cut, the oldest
// first, until what the rest hold is back under the mark; the others go
// on.
func TestBudgetCutsStreamsBeingSetUpThatHoldTooMuch(t *testing.T) {
	const limit = 1 << 20
	const streams = 24 // 1.5 MiB of early data
	budget, server, client := clientBudgetPair(t, limit)
	_, set := acceptSetUp(t, server, client, streams, MaxEarlyData-1)
	held := func() (n int64, alive []*Stream) {
		for _, c := range set {
			if !c.closed.Load() {
				n += MaxEarlyData
				alive = append(alive, c)
			}
		}
		return n, alive
	}
	mark := int64(limit / 4 * 3 * 9 / 10)
	eventually(t, "what the streams being set up hold is back under the mark, and the budget counts them", func() bool {
		n, alive := held()
		return n <= mark && budget.pending.Load() == int64(len(alive))
	})
	n, alive := held()
	t.Logf("%d of %d streams being set up cut; the rest hold %d bytes (mark %d)", streams-len(alive), streams, n, mark)
	if want := int(mark / MaxEarlyData); len(alive) != want {
		t.Errorf("%d streams being set up left, want the %d that fit under the mark", len(alive), want)
	}
	for i, c := range set[:streams-len(alive)] {
		if !c.closed.Load() {
			t.Errorf("stream %d, among the oldest, was not cut", i)
		}
	}
	replyAndReadEarly(t, budget, alive, MaxEarlyData-1)
}

// replyAndReadEarly lifts the budget's limit, replies to each stream
// being set up (from acceptSetUp) and checks that its early bytes are
// intact. The limit is lifted since once read and left, a stream counts
// its whole window: a few of them would be over the budget, and cut the
// others.
func replyAndReadEarly(t *testing.T, budget *Budget, set []*Stream, early int) {
	t.Helper()
	budget.SetLimit(0)
	for i, c := range set {
		if err := Reply(c, "", ""); err != nil {
			t.Fatalf("stream %d: reply: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, early)
		if _, err := io.ReadFull(c, got); err != nil || got[early-1] != 'e' {
			t.Fatalf("stream %d: its early bytes: %v", i, err)
		}
	}
}
