package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

func TestReloadKeepsSessionsDownloadsAndWebsockets(t *testing.T) {
	const size = 8 << 20
	up := newUpstream(t, "app")
	addr, c := server(t, inletsBoth)
	cl := testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", up.URL))
	before := sessionsOf(cl.ID())
	if len(before) != 1 {
		t.Fatalf("want 1 session, got %d", len(before))
	}

	// A download that the upstream holds at half way, and an open websocket.
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/held?size=%d", addr, size), nil)
	req.Host = "app.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, size/2); err != nil {
		t.Fatal(err)
	}
	ws := dialWebsocket(t, addr, "app.example.com", "/ws")
	echoOnce(t, ws, "app", "before reload")

	// Reload with a changed config, as `caddy reload` does.
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	changed := fmt.Sprintf(":%s {\n\theader X-Config reloaded\n\t%s\n}", port, inletsBoth)
	if err := c.Load(testenv.Caddyfile(adminPort, "", changed)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Host = "app.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.Header.Get("X-Config") != "reloaded" {
			return fmt.Errorf("new config not serving yet")
		}
		return nil
	})

	// The session is the same one, the websocket still works, and the
	// download completes intact.
	after := sessionsOf(cl.ID())
	if len(after) != 1 || after[0] != before[0] {
		t.Fatalf("the client's session changed across the reload: before %v, after %v", before, after)
	}
	echoOnce(t, ws, "app", "after reload")
	close(up.release)
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("download cut by the reload: %v", err)
	}
	if hex.EncodeToString(h.Sum(nil)) != payloadSHA(size) {
		t.Fatal("download corrupted across the reload")
	}
	if code, e := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("after reload: %d %+v", code, e)
	}
}

func TestSessionsLeaveNoGoroutinesOrFileDescriptors(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	exercise := func(n int) {
		var clients []*testenv.RunningClient
		for range n {
			clients = append(clients, testenv.Client(t, testenv.HTTPClient("ws://"+addr, "leak.example.com", up.URL)))
		}
		for range 4 * n {
			if code, _ := request(t, http.MethodGet, addr, "leak.example.com", "/", nil); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
		}
		ws := dialWebsocket(t, addr, "leak.example.com", "/ws")
		echoOnce(t, ws, "app", "hello")
		ws.Close()
		for _, c := range clients {
			c.Stop()
		}
		for _, c := range clients {
			testenv.Eventually(t, 5*time.Second, func() error {
				if n := len(sessionsOf(c.ID())); n > 0 {
					return fmt.Errorf("client %s still has a session", c.ID())
				}
				return nil
			})
		}
		http.DefaultClient.CloseIdleConnections()
	}

	// Warm up: the first sessions start Caddy's and the runtime's
	// long-lived goroutines (dynamic upstream cleaner, DNS, timers).
	exercise(1)
	base := testenv.SettledResources(t)
	exercise(5)
	testenv.ResourcesBackTo(t, base, "5 clients left")
}
