package handler

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Streaming and websockets need the Flusher and Hijacker beneath the
// recorder; the status must still be noted.
func TestResponseRecorderKeepsFlushAndHijackAndNotesTheStatus(t *testing.T) {
	codes := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := caddyhttp.NewResponseRecorder(w, nil, nil)
		switch r.URL.Path {
		case "/flush":
			rec.WriteHeader(http.StatusAccepted)
			io.WriteString(rec, "first")
			if err := http.NewResponseController(rec).Flush(); err != nil {
				t.Errorf("flush through the recorder: %v", err)
			}
		case "/hijack":
			rec.WriteHeader(http.StatusSwitchingProtocols)
			conn, brw, err := http.NewResponseController(rec).Hijack()
			if err != nil {
				t.Errorf("hijack through the recorder: %v", err)
				break
			}
			brw.WriteString("hijacked\n")
			brw.Flush()
			conn.Close()
		case "/implicit":
			rec.(io.ReaderFrom).ReadFrom(strings.NewReader("body"))
		case "/early-hints":
			rec.WriteHeader(http.StatusEarlyHints)
			rec.WriteHeader(http.StatusNotFound)
		}
		codes <- statusOr(rec, 0)
	}))
	defer srv.Close()

	for path, want := range map[string]int{"/flush": 202, "/implicit": 200, "/early-hints": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := <-codes; got != want {
			t.Errorf("%s: recorded %d, want %d", path, got, want)
		}
	}

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := <-codes; got != http.StatusSwitchingProtocols {
		t.Errorf("/hijack: recorded %d, want 101", got)
	}
	br := bufio.NewReader(conn)
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, line)
	}
	if !strings.Contains(strings.Join(lines, ""), "hijacked\n") {
		t.Errorf("hijacked connection got %q", lines)
	}
}

func TestResponseStatusOfAFailedProxyIsTheErrorsStatus(t *testing.T) {
	rec := caddyhttp.NewResponseRecorder(httptest.NewRecorder(), nil, nil)
	if got := responseStatus(rec, caddyhttp.Error(http.StatusBadGateway, errors.New("dial failed"))); got != 502 {
		t.Errorf("handler error 502: got %d", got)
	}
	if got := responseStatus(rec, errors.New("plain")); got != 500 {
		t.Errorf("plain error: got %d", got)
	}
	if got := responseStatus(rec, nil); got != 200 {
		t.Errorf("nothing written: got %d", got)
	}
	rec.WriteHeader(499)
	if got := responseStatus(rec, caddyhttp.Error(http.StatusBadGateway, errors.New("late"))); got != 499 {
		t.Errorf("written before the error: got %d", got)
	}
}
