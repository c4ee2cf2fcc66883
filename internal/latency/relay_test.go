package latency

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// target listens on 127.0.0.1 and runs handle on each connection it
// accepts, which it closes after; the test's cleanup stops it and waits
// for every handler.
func target(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func startRelay(t *testing.T, to string, up, down time.Duration) *Relay {
	t.Helper()
	r, err := Start(to, up, down)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t *testing.T, r *Relay) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

func TestEachDirectionIsDelayed(t *testing.T) {
	const up, down = 80 * time.Millisecond, 40 * time.Millisecond
	arrived := make(chan time.Time, 1)
	r := startRelay(t, target(t, func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err == nil {
			arrived <- time.Now()
			c.Write(b)
		}
	}), up, down)
	c := dial(t, r)

	sent := time.Now()
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	there := <-arrived
	if d := there.Sub(sent); d < up {
		t.Errorf("the byte reached the target %s after it was sent, before the up delay of %s", d, up)
	}
	if d := back.Sub(there); d < down {
		t.Errorf("the answer came back %s after the target wrote it, before the down delay of %s", d, down)
	}
	if d := back.Sub(sent); d > up+down+time.Second {
		t.Errorf("the round trip took %s, far more than %s", d, up+down)
	}
}

func TestChunksArePipelined(t *testing.T) {
	const delay, apart = 100 * time.Millisecond, 10 * time.Millisecond
	first, second := []byte("first"), []byte("second")
	arrivals := make(chan [2]time.Time, 1)
	r := startRelay(t, target(t, func(c net.Conn) {
		var at [2]time.Time
		for i, want := range [][]byte{first, second} {
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
				return
			}
			at[i] = time.Now()
		}
		arrivals <- at
	}), delay, 0)
	c := dial(t, r)

	var sent [2]time.Time
	sent[0] = time.Now()
	c.Write(first)
	time.Sleep(apart) // pacing the sender, not waiting for anything
	sent[1] = time.Now()
	c.Write(second)
	var at [2]time.Time
	select {
	case at = <-arrivals:
	case <-time.After(10 * time.Second):
		t.Fatal("the chunks never arrived")
	}
	for i := range at {
		if d := at[i].Sub(sent[i]); d < delay {
			t.Errorf("chunk %d arrived %s after it was sent, before the delay of %s", i+1, d, delay)
		}
	}
	// A relay that waited out each chunk's delay before reading the next
	// would deliver them a whole delay apart. (They may arrive closer than
	// they were sent when a busy machine runs the relay's reader late:
	// it then reads both at once.)
	if gap := at[1].Sub(at[0]); gap > delay/2 {
		t.Errorf("chunks sent %s apart arrived %s apart; want about %s", sent[1].Sub(sent[0]), gap, apart)
	}
}

func TestThroughputIsNotCappedByTheDelay(t *testing.T) {
	const delay, size = 50 * time.Millisecond, 64 << 20
	block := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{}).Read(block)
	sum := crc32.NewIEEE()
	for range size / len(block) {
		sum.Write(block)
	}

	type received struct {
		n   int64
		sum uint32
		at  time.Time
	}
	done := make(chan received, 1)
	r := startRelay(t, target(t, func(c net.Conn) {
		h := crc32.NewIEEE()
		n, _ := io.Copy(h, c)
		done <- received{n, h.Sum32(), time.Now()}
	}), delay, 0)
	c := dial(t, r)

	start := time.Now()
	for range size / len(block) {
		if _, err := c.Write(block); err != nil {
			t.Fatal(err)
		}
	}
	c.CloseWrite()
	var got received
	select {
	case got = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the transfer did not end")
	}
	if got.n != size || got.sum != sum.Sum32() {
		t.Fatalf("the target received %d bytes (CRC %08x); want %d (CRC %08x)", got.n, got.sum, size, sum.Sum32())
	}
	// A relay that passed on one 4 MiB window per round trip of 100 ms
	// would manage 42 MB/s; one that waited out each chunk's delay before
	// reading the next, 1.3 MB/s. Without the race detector this relay
	// moves about 600 MB/s here.
	want := 200.0
	if raceEnabled {
		want = 100
	}
	took := got.at.Sub(start)
	rate := float64(size) / took.Seconds() / 1e6
	t.Logf("64 MiB through a delay of %s in %s: %.0f MB/s", delay, took, rate)
	if rate < want {
		t.Errorf("64 MiB took %s through a delay of %s: %.0f MB/s, want over %.0f", took, delay, rate, want)
	}
}

func TestHalfCloseIsPassedOnAfterTheData(t *testing.T) {
	const delay = 50 * time.Millisecond
	type seen struct {
		data []byte
		at   time.Time
	}
	eof := make(chan seen, 1)
	r := startRelay(t, target(t, func(c net.Conn) {
		data, err := io.ReadAll(c)
		if err != nil {
			return
		}
		eof <- seen{data, time.Now()}
		// The other direction still flows.
		c.Write([]byte("pong"))
	}), delay, delay)
	c := dial(t, r)

	c.Write([]byte("ping"))
	closed := time.Now()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(answer) != "pong" {
		t.Errorf("after its half-close the client read %q, want %q", answer, "pong")
	}
	got := <-eof
	if string(got.data) != "ping" {
		t.Errorf("the target read %q before the end of stream, want %q", got.data, "ping")
	}
	if d := got.at.Sub(closed); d < delay {
		t.Errorf("the end of stream reached the target %s after the half-close, before the delay of %s", d, delay)
	}
}

func TestResetIsPassedOn(t *testing.T) {
	accepted, readErr := make(chan struct{}), make(chan error, 1)
	r := startRelay(t, target(t, func(c net.Conn) {
		close(accepted)
		_, err := io.Copy(io.Discard, c)
		readErr <- err
	}), 20*time.Millisecond, 0)
	c := dial(t, r)

	// Once the relay has dialled the target, so that a reset is what
	// reaches it.
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay never dialled its target")
	}
	c.SetLinger(0)
	c.Close()
	select {
	case err := <-readErr:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the target's read ended with %v, want a reset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the target never saw the reset")
	}
}

func TestUnreachableTargetIsAReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	r := startRelay(t, nobody, 0, 0)
	// The reset may come before the dial has returned.
	c, err := net.DialTimeout("tcp", r.Addr(), 5*time.Second)
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connecting to a relay whose target is unreachable: %v, want a reset", err)
	}
}

func TestCloseEndsEveryConnectionAndGoroutine(t *testing.T) {
	const n = 3
	accepted := make(chan struct{}, n)
	to := target(t, func(c net.Conn) {
		accepted <- struct{}{}
		io.Copy(c, c)
	})
	baseline := runtime.NumGoroutine()
	r, err := Start(to, 200*time.Millisecond, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*net.TCPConn
	for range n {
		c := dial(t, r)
		c.Write(bytes.Repeat([]byte{'x'}, 1<<20)) // in flight when the relay closes
		conns = append(conns, c)
	}
	for i := range n {
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatalf("the relay dialled its target for %d connections of %d", i, n)
		}
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("connection %d after Close: %v, want its end", i, err)
		}
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Error("the relay still accepts connections after Close")
	}
	// The target's handlers end once the relay's connections to it are
	// gone; the relay's own goroutines have all returned in Close.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before Start:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
