package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/gorilla/websocket"
)

// echo is what the test upstream reports about a request.
type echo struct {
	Upstream  string `json:"upstream"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Host      string `json:"host"`
	XFF       string `json:"xff"`
	XFProto   string `json:"xfproto"`
	XFHost    string `json:"xfhost"`
	BodyBytes int64  `json:"bodyBytes"`
	BodySHA   string `json:"bodySHA"`
	// TLS is set when the request reached the upstream over TLS.
	TLS bool `json:"tls"`
}

// upstream is a test service behind a tunnel client.
type upstream struct {
	*httptest.Server
	name string
	// sseNext releases the next server-sent event.
	sseNext chan struct{}
	// release lets a /held download finish.
	release chan struct{}
}

// newUpstream starts a test upstream:
//
//	/          echoes the request as JSON (sha256 of the body included)
//	/ws        websocket echo (also at /api/v1/ws)
//	/sse       three server-sent events, each held until sseNext
//	/download  ?size=N deterministic bytes (see payload)
//	/held      ?size=N, streamed: half the bytes, then the rest after release
func newUpstream(t *testing.T, name string) *upstream {
	u := &upstream{name: name, sseNext: make(chan struct{}), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{
			Upstream: name, Method: r.Method, Path: r.URL.Path, Host: r.Host,
			XFF: r.Header.Get("X-Forwarded-For"), XFProto: r.Header.Get("X-Forwarded-Proto"),
			XFHost: r.Header.Get("X-Forwarded-Host"), BodyBytes: n, BodySHA: hex.EncodeToString(h.Sum(nil)), TLS: r.TLS != nil,
		})
	})
	upgrader := websocket.Upgrader{}
	wsEcho := func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			typ, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if err := ws.WriteMessage(typ, append([]byte(name+": "), msg...)); err != nil {
				return
			}
		}
	}
	mux.HandleFunc("/ws", wsEcho)
	mux.HandleFunc("/api/v1/ws", wsEcho) // for clients whose upstream URL has the prefix /api/v1
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			if i < 3 {
				select {
				case <-u.sseNext:
				case <-r.Context().Done():
					return
				}
			}
		}
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.Copy(w, payload(int64(size)))
	})
	mux.HandleFunc("/held", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: a streamed (chunked) response, which proxies
		// pass on as it comes. With a Content-Length, Caddy's reverse_proxy
		// may hold the last few KiB of the first half in its buffer.
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		body := payload(int64(size))
		io.CopyN(w, body, int64(size/2))
		w.(http.Flusher).Flush()
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		io.Copy(w, body)
	})
	// Every answer says which upstream gave it.
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// payload returns size deterministic pseudo-random bytes.
func payload(size int64) io.Reader {
	return io.LimitReader(&randReader{r: rand.NewChaCha8([32]byte{1, 2, 3})}, size)
}

type randReader struct{ r *rand.ChaCha8 }

func (r *randReader) Read(p []byte) (int, error) { return r.r.Read(p) }

// payloadSHA is the hex sha256 of payload(size).
func payloadSHA(size int64) string {
	h := sha256.New()
	io.Copy(h, payload(size))
	return hex.EncodeToString(h.Sum(nil))
}

// newBenchUpstream serves /small: a 13-byte body, as a benchmark upstream.
func newBenchUpstream(b testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello, world\n")
	}))
	b.Cleanup(srv.Close)
	return srv
}
