package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func TestDisallowedHostIsRejectedWithAReason(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, "inlets {\n\t\ttoken "+testenv.Token+"\n\t\tallow_hosts *.example.com\n\t}")

	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client",
		"--url", "ws://"+addr, "--token", testenv.Token, "--id", "disallowed-host-client",
		"--upstream", "app.example.com="+up.URL+",intranet.corp.internal="+up.URL)
	p.WaitOutput(t, 10*time.Second, "server rejected the tunnel: host intranet.corp.internal is not allowed by this server")
	if n := len(sessionsOf("disallowed-host-client")); n != 0 {
		t.Fatalf("rejected client has %d sessions", n)
	}
	// Nothing of the rejected announcement was applied: the host, which
	// allow_hosts allows, has no client (503, offline).
	if code, _ := testenv.Get(t, addr, "app.example.com", "/"); code != http.StatusServiceUnavailable {
		t.Fatalf("a host of a rejected announcement is served: %d", code)
	}

	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", up.URL))
	if code, e := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("allowed host: %d %+v", code, e)
	}
}

// rawSession authenticates and upgrades like a client written from the
// protocol's specification with stock yamux, accepts the server's control
// stream without saying hello, and returns the session and a function
// that sends a hello frame and reads the answer.
func rawSession(t *testing.T, addr string) (*yamux.Session, net.Conn, func(frame []byte) tunnel.Message) {
	t.Helper()
	return rawSessionWith(t, addr, testenv.Token)
}

// rawSessionWith is rawSession with the given token.
func rawSessionWith(t *testing.T, addr, token string) (*yamux.Session, net.Conn, func(frame []byte) tunnel.Message) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connect", http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	mux, err := yamux.Server(tunnel.NewConn(ws, tunnel.ClientSide), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := mux.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
	return mux, ctrl, func(frame []byte) tunnel.Message {
		ctrl.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := ctrl.Write(frame); err != nil {
			t.Fatal(err)
		}
		var answer tunnel.Message
		if err := tunnel.ReadFrame(ctrl, tunnel.MaxHandshakeSize, &answer); err != nil {
			t.Fatalf("no answer to a bad hello: %v", err)
		}
		return answer
	}
}

func TestMalformedHandshakesAreRejectedAndHarmless(t *testing.T) {
	up := newUpstream(t, "app")
	addr, _ := server(t, inletsBoth)
	testenv.Client(t, testenv.HTTPClient("ws://"+addr, "app.example.com", up.URL))

	for name, tt := range map[string]struct {
		frame []byte
		want  string
	}{
		"not json":     {frame("{hello"), "decoding frame"},
		"too large":    {[]byte{0, 0x10, 0, 0}, "exceeds the limit"},
		"no upstreams": {frame(`{"clientID":"x","protocol":2,"mode":"http"}`), "at least one host"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, hello := rawSession(t, addr)
			answer := hello(tt.frame)
			if answer.Type != tunnel.TypeReject || answer.Code != tunnel.RejectBadHello || answer.Retry != tunnel.RetryNever || !strings.Contains(answer.Reason, tt.want) {
				t.Fatalf("got %+v, want a bad-hello rejection mentioning %q", answer, tt.want)
			}
		})
	}

	// Garbage instead of yamux: the server ends that session only.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connect", http.Header{"Authorization": {"Bearer " + testenv.Token}})
	if err != nil {
		t.Fatal(err)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("GET / HTTP/1.1\r\n\r\n this is not yamux"))
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	ws.Close()

	if code, e := request(t, http.MethodGet, addr, "app.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
		t.Fatalf("after bad handshakes the good client must still be served: %d %+v", code, e)
	}
}

// A version 1 client (before stream replies) is told to upgrade, in a
// rejection it can print: its reason.
func TestVersion1ClientIsToldToUpgrade(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	_, _, send := rawSession(t, addr)
	answer := send(frame(`{"clientID":"v1","version":"0.9","protocol":1,"mode":"http","http":[{"host":"v1.example.com","url":"http://127.0.0.1:9"}]}`))
	if answer.Type != tunnel.TypeReject || answer.Code != tunnel.RejectProtocol || answer.Retry != tunnel.RetryNever ||
		!strings.Contains(answer.Reason, "this client speaks protocol 1, and this server 2 to 3: upgrade the client") {
		t.Fatalf("got %+v, want a protocol-version rejection telling to upgrade the client", answer)
	}
	// A version 2 client is accepted at 2, and one whose range reaches
	// up to 3 at 3; an unknown field in a hello is ignored.
	for _, tt := range []struct {
		hello string
		want  int
	}{
		{`{"clientID":"v2","protocol":2,"mode":"http","http":[{"host":"v2.example.com","url":"http://127.0.0.1:9"}]}`, 2},
		{`{"clientID":"v3","protocol":4,"minProtocol":2,"mode":"http","http":[{"host":"v3.example.com","url":"http://127.0.0.1:9"}],"futureField":{"x":1}}`, 3},
	} {
		_, _, send = rawSession(t, addr)
		if answer = send(frame(tt.hello)); answer.Type != tunnel.TypeAccept || answer.Protocol != tt.want {
			t.Fatalf("%s got %+v, want accept at protocol %d", tt.hello, answer, tt.want)
		}
	}
	// One that speaks only newer versions is told to upgrade the server.
	_, _, send = rawSession(t, addr)
	answer = send(frame(`{"clientID":"v4","protocol":5,"minProtocol":4,"mode":"http","http":[{"host":"v4.example.com","url":"http://127.0.0.1:9"}]}`))
	if answer.Code != tunnel.RejectProtocol || !strings.Contains(answer.Reason, "upgrade the server") {
		t.Fatalf("a 4-5 client got %+v", answer)
	}
}

// frame is a length-prefixed frame of body.
func frame(body string) []byte {
	n := len(body)
	return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

func TestStreamsOpenedByTheClientAreRefused(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	hello := func(id string) []byte {
		return frame(`{"clientID":"` + id + `","protocol":2,"mode":"http","http":[{"host":"` + id + `.example.com","url":"http://127.0.0.1:9"}]}`)
	}
	// refused opens a stream from the client's side and reports whether
	// the server reset it.
	refused := func(mux *yamux.Session) error {
		st, err := mux.OpenStream()
		if err != nil {
			return err
		}
		st.Write([]byte("hi"))
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := st.Read(make([]byte, 1)); err != yamux.ErrConnectionReset {
			return fmt.Errorf("a stream the client opened: %v, want it reset", err)
		}
		return nil
	}

	// Before the hello and after it, the server resets such a stream,
	// and the session goes on.
	mux, _, send := rawSession(t, addr)
	if err := refused(mux); err != nil {
		t.Fatal(err)
	}
	if answer := send(hello("opens-streams")); answer.Type != tunnel.TypeAccept {
		t.Fatalf("a valid hello got %+v", answer)
	}
	if err := refused(mux); err != nil {
		t.Fatal(err)
	}
	if n := len(sessionsOf("opens-streams")); n != 1 || mux.IsClosed() {
		t.Fatalf("the accepted session must stay up: %d sessions, closed %v", n, mux.IsClosed())
	}
}

func TestSilentClientIsDroppedAfterTheHandshakeTimeout(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	mux, _, _ := rawSession(t, addr) // upgraded, control stream accepted, no hello
	start := time.Now()
	select {
	case <-mux.CloseChan():
	case <-time.After(tunnel.HandshakeTimeout + 5*time.Second):
		t.Fatal("the server kept a client that never said hello")
	}
	if waited := time.Since(start); waited < tunnel.HandshakeTimeout-time.Second || waited > tunnel.HandshakeTimeout+4*time.Second {
		t.Fatalf("the server dropped a silent client after %s, want about %s", waited, tunnel.HandshakeTimeout)
	}
}

// RFC 6455, section 5.5, on the real control plane: a raw WebSocket
// client's Ping gets a Pong, and its Close a Close.
func TestControlPlaneAnswersWebSocketPingAndClose(t *testing.T) {
	addr, _ := server(t, inletsBoth)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connect", http.Header{"Authorization": {"Bearer " + testenv.Token}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	pongs, closes := make(chan string, 1), make(chan int, 1)
	ws.SetPongHandler(func(data string) error { pongs <- data; return nil })
	ws.SetCloseHandler(func(code int, _ string) error { closes <- code; return nil })
	go func() {
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}()
	ws.WriteControl(websocket.PingMessage, []byte("load balancer"), time.Now().Add(time.Second))
	select {
	case got := <-pongs:
		if got != "load balancer" {
			t.Errorf("pong %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong from the control plane")
	}
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	select {
	case code := <-closes:
		if code != websocket.CloseNormalClosure {
			t.Errorf("close code %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no close from the control plane")
	}
}

// A handler's own token is the default tunnel's, taken at every handler
// of the config: presented at another site's handler, it serves what its
// own handler's allow_hosts allow, through either site, and not what the
// other handler's allow.
func TestAHandlersTokenIsTheDefaultTunnelsAtEveryHandler(t *testing.T) {
	up := newUpstream(t, "app")
	one, two := testenv.FreePort(t), testenv.FreePort(t)
	testenv.StartCaddy(t, adminPort, "", fmt.Sprintf(":%d {\n\tinlets {\n\t\ttoken %s\n\t\tallow_hosts a.example.com\n\t}\n}\n"+
		":%d {\n\tinlets {\n\t\ttoken site-two-token-0123456789\n\t\tallow_hosts b.example.com\n\t}\n}", one, testenv.Token, two))
	siteOne, siteTwo := fmt.Sprintf("127.0.0.1:%d", one), fmt.Sprintf("127.0.0.1:%d", two)

	testenv.Client(t, testenv.HTTPClient("ws://"+siteTwo, "a.example.com", up.URL))
	for _, addr := range []string{siteOne, siteTwo} {
		if code, e := request(t, http.MethodGet, addr, "a.example.com", "/", nil); code != http.StatusOK || e.Upstream != "app" {
			t.Fatalf("a.example.com through %s: %d %+v", addr, code, e)
		}
	}
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client",
		"--url", "ws://"+siteTwo, "--token", testenv.Token, "--id", "other-sites-host",
		"--upstream", "b.example.com="+up.URL)
	p.WaitOutput(t, 10*time.Second, "server rejected the tunnel: host b.example.com is not allowed by this server, which allows a.example.com")
	// Site two allows b.example.com, which has no client: offline, 503.
	if code, _ := testenv.Get(t, siteTwo, "b.example.com", "/"); code != http.StatusServiceUnavailable {
		t.Fatalf("b.example.com, announced with site one's token: %d, want 503", code)
	}
}
