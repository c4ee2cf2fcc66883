package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// endless is an upstream that answers every request, and writes to every
// TCP connection, an endless stream of bytes, and counts the connections
// it holds open.
type endless struct {
	HTTP string // host:port of the HTTP server
	TCP  string // host:port of the TCP server
	open atomic.Int64
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
			w.Header().Set("Content-Length", strconv.Itoa(1<<30))
			for i := 0; i < 1<<30/len(endlessBlock); i++ {
				if _, err := w.Write(endlessBlock); err != nil {
					return
				}
			}
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				e.open.Add(1)
			case http.StateClosed, http.StateHijacked:
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

// heapInUse is the heap in use after a garbage collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// abandon starts a download with a raw connection, reads some of it, and
// goes away.
func abandonHTTP(addr, host string, read int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(c, make([]byte, read))
	return err
}

func TestAbandonedDownloadsLeaveNoMemoryOrUpstreamSockets(t *testing.T) {
	up := newEndless(t)
	addr, _ := server(t, inletsBoth)
	testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--url", "ws://"+addr, "--token", testenv.Token,
		"--id", "big", "--upstream", "big.example.com=http://"+up.HTTP)
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(sessionsOf("big")) == 0 {
			return fmt.Errorf("client not connected")
		}
		return nil
	})
	base := heapInUse()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := abandonHTTP(addr, "big.example.com", 256<<10); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("abandoned 200 downloads (%d failed to start); heap %d MiB -> %d MiB", failed.Load(), base>>20, heapInUse()>>20)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		t.Logf("heap in use %d MiB (baseline %d MiB), upstream connections open %d", heapInUse()>>20, base>>20, up.open.Load())
	}
}
