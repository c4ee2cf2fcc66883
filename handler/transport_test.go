package handler

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// heldBody is a visitor's body whose Read waits for a chunk (or for its
// Close, if closeEnds) and says when it has begun.
type heldBody struct {
	began     chan struct{}
	chunks    chan []byte
	closed    chan struct{}
	closeEnds bool
	closes    atomic.Int32
}

func newHeldBody(closeEnds bool) *heldBody {
	return &heldBody{began: make(chan struct{}, 1), chunks: make(chan []byte), closed: make(chan struct{}), closeEnds: closeEnds}
}

func (b *heldBody) Read(p []byte) (int, error) {
	b.began <- struct{}{}
	if b.closeEnds {
		select {
		case c := <-b.chunks:
			return copy(p, c), nil
		case <-b.closed:
			return 0, errors.New("read on a closed body")
		}
	}
	return copy(p, <-b.chunks), nil
}

func (b *heldBody) Close() error {
	if b.closes.Add(1) == 1 {
		close(b.closed)
	}
	return nil
}

// countingWrapper counts what is read without a lock, as reverse_proxy's
// wrapper of a request body does: a Close concurrent with a Read is a
// data race that -race reports.
type countingWrapper struct {
	io.ReadCloser
	read   int
	closes int
}

func (w *countingWrapper) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	w.read += n
	return n, err
}

func (w *countingWrapper) Close() error {
	w.closes++
	if w.read == 0 {
		return nil
	}
	return w.ReadCloser.Close()
}

// readInBackground starts a Read of b and returns where its result goes
// once it has begun on the visitor's body.
func readInBackground(t *testing.T, b io.Reader, visitor *heldBody) chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 64))
		done <- err
	}()
	within(t, visitor.began, "the Read did not begin")
	return done
}

// within waits for c, or fails with msg after 10 s.
func within[T any](t *testing.T, c <-chan T, msg string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
}

// closedOnce checks that the visitor's body and the wrapper were each
// closed once.
func closedOnce(t *testing.T, held *heldBody, wrapper *countingWrapper) {
	t.Helper()
	if n := held.closes.Load(); n != 1 {
		t.Fatalf("the visitor's body was closed %d times, want once", n)
	}
	if wrapper.closes != 1 {
		t.Fatalf("the wrapper was closed %d times, want once", wrapper.closes)
	}
}

// A Close during a Read, as HTTP/2's transport does from a goroutine of
// its own when the stream ends first, closes the visitor's body: for an
// HTTP/2 visitor that ends a Read that waits on it. reverse_proxy's
// wrapper is closed once that Read has returned.
func TestCloseDuringAReadEndsItThroughTheVisitorsBody(t *testing.T) {
	held, wrapper, b := heldAndRead(t, true)
	done := readInBackground(t, b, held)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	within(t, done, "the Read did not end: the Close did not reach the visitor's body")
	closedOnce(t, held, wrapper)
}

// The Close and the Read never touch reverse_proxy's wrapper at once,
// whichever comes first, also when the Read ends by data of its own (an
// HTTP/1.1 visitor's body, whose Close cannot end a Read). Nothing
// orders the Close's goroutine and the data here: with the Close passed
// straight to the wrapper, -race reports the wrapper's count.
func TestCloseAndReadNeverMeetInTheWrapper(t *testing.T) {
	held, wrapper, b := heldAndRead(t, false)
	done := readInBackground(t, b, held)
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	held.chunks <- []byte("more")
	within(t, done, "the Read did not return")
	within(t, closed, "the Close did not return")
	closedOnce(t, held, wrapper)
}

// heldAndRead is a visitor's body under a wrapper under closeAfterRead,
// with its first 5 bytes read.
func heldAndRead(t *testing.T, closeEnds bool) (*heldBody, *countingWrapper, *closeAfterRead) {
	t.Helper()
	held := newHeldBody(closeEnds)
	vb := &visitorBody{ReadCloser: held, endsRead: closeEnds}
	wrapper := &countingWrapper{ReadCloser: vb}
	b := &closeAfterRead{body: wrapper, visitor: vb}
	go func() { held.chunks <- []byte("first") }()
	if n, err := b.Read(make([]byte, 64)); n != 5 || err != nil {
		t.Fatalf("first Read: %d, %v", n, err)
	}
	<-held.began
	return held, wrapper, b
}

// A Close with no Read in flight goes straight to the wrapper, which
// decides: one before any byte is read leaves the visitor's body open
// (reverse_proxy may offer the request to another upstream).
func TestCloseBetweenReadsGoesToTheWrapper(t *testing.T) {
	held := newHeldBody(true)
	vb := &visitorBody{ReadCloser: held}
	wrapper := &countingWrapper{ReadCloser: vb}
	b := &closeAfterRead{body: wrapper, visitor: vb}
	b.Close()
	if wrapper.closes != 1 || held.closes.Load() != 0 {
		t.Fatalf("a Close before any Read: the wrapper closed %d times, the visitor's body %d; want 1 and 0", wrapper.closes, held.closes.Load())
	}
	held.chunks = make(chan []byte, 1)
	held.chunks <- []byte("first")
	if n, err := b.Read(make([]byte, 64)); n != 5 || err != nil {
		t.Fatalf("Read after a Close before any byte: %d, %v", n, err)
	}
	b.Close()
	if wrapper.closes != 2 || held.closes.Load() != 1 {
		t.Fatalf("a Close after a Read: the wrapper closed %d times, the visitor's body %d; want 2 and 1", wrapper.closes, held.closes.Load())
	}
}

func TestGRPCTimeout(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"300m", 300 * time.Millisecond, true},
		{"299960u", 299960 * time.Microsecond, true},
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"5S", 5 * time.Second, true},
		{"7n", 7, true},
		{"99999999H", math.MaxInt64, true},
		{"12345678S", 12345678 * time.Second, true},
		{"123456789S", 0, false}, // 9 digits
		{"m", 0, false},
		{"", 0, false},
		{"10", 0, false},
		{"10s", 0, false},
		{"-1S", 0, false},
		{"+1S", 0, false},
	} {
		got, ok := grpcTimeout(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("grpcTimeout(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzGRPCTimeout reads grpc-timeout headers a visitor sends: never a
// negative timeout, and whatever it accepts is digits and a unit.
func FuzzGRPCTimeout(f *testing.F) {
	for _, v := range []string{"300m", "1H", "99999999H", "0n", "", "S", "1x", "-1S"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := grpcTimeout(v)
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("%q: negative %v", v, d)
		}
		if len(v) < 2 || len(v) > 9 || strings.Trim(v[:len(v)-1], "0123456789") != "" || !strings.Contains("HMSmun", v[len(v)-1:]) {
			t.Fatalf("%q accepted as %v", v, d)
		}
	})
}

// An h2c upstream's reset with CANCEL of a gRPC call is answered as a
// gRPC client takes such a reset: DEADLINE_EXCEEDED once the call's
// grpc-timeout has passed, CANCELLED before; other requests and errors
// are left to reverse_proxy.
func TestGRPCResetIsAGRPCStatus(t *testing.T) {
	grpcReq := func(timeout string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/svc/Method", nil)
		r.Header.Set("Content-Type", "application/grpc+proto")
		if timeout != "" {
			r.Header.Set("Grpc-Timeout", timeout)
		}
		return r
	}
	cancel := fmt.Errorf("round trip: %w", http2.StreamError{StreamID: 5, Code: http2.ErrCodeCancel})
	long := time.Now().Add(-time.Second)
	for _, c := range []struct {
		name   string
		req    *http.Request
		err    error
		start  time.Time
		status string
	}{
		{"deadline passed", grpcReq("300m"), cancel, long, "4"},
		{"deadline not passed", grpcReq("10S"), cancel, long, "1"},
		{"no deadline", grpcReq(""), cancel, long, "1"},
		{"another reset", grpcReq("300m"), http2.StreamError{StreamID: 5, Code: http2.ErrCodeInternal}, long, ""},
		{"another error", grpcReq("300m"), errors.New("dial: refused"), long, ""},
		{"no error", grpcReq("300m"), nil, long, ""},
		{"not gRPC", httptest.NewRequest(http.MethodPost, "/", nil), cancel, long, ""},
		{"gRPC-Web", func() *http.Request {
			r := grpcReq("300m")
			r.Header.Set("Content-Type", "application/grpc-web+proto")
			return r
		}(), cancel, long, ""},
	} {
		resp := grpcReset(c.req, c.err, c.start)
		switch {
		case c.status == "" && resp != nil:
			t.Errorf("%s: answered %d %v, want it left to reverse_proxy", c.name, resp.StatusCode, resp.Trailer)
		case c.status == "":
		case resp == nil:
			t.Errorf("%s: not answered, want grpc-status %s", c.name, c.status)
		case resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/grpc" || resp.Trailer.Get("Grpc-Status") != c.status:
			t.Errorf("%s: %d %v %v, want 200, application/grpc, grpc-status %s", c.name, resp.StatusCode, resp.Header, resp.Trailer, c.status)
		}
	}
}
