package tunnel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// budgetPair is a session pair whose server counts unread data in a
// budget of limit bytes, with its control stream open.
func budgetPair(t *testing.T, limit int64) (*Budget, *Session, *Session) {
	t.Helper()
	cws, sws := wsPair(t)
	budget := NewBudget(limit)
	server, err := ServerSession(NewConn(sws, ServerSide), ServerConfig{Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ClientSession(NewConn(cws, ClientSide), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	ctrl, _ := server.Open()
	ctrl.Write([]byte{0})
	if _, err := client.Accept(context.Background()); err != nil {
		t.Fatal(err)
	}
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
