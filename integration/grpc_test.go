package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// h2Visitor is an HTTP/2 visitor of the TLS site on port, whatever host
// its URLs name, trusting roots.
func h2Visitor(roots *x509.CertPool, port int) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
		},
	}}
}

// caddyRoots waits for the root certificate of Caddy's internal CA (Caddy
// writes it where its data directory is) and returns it as a pool, with
// the file it is in.
func caddyRoots(t *testing.T) (*x509.CertPool, string) {
	t.Helper()
	file := filepath.Join(caddy.AppDataDir(), "pki", "authorities", "local", "root.crt")
	var pem []byte
	testenv.Eventually(t, 10*time.Second, func() (err error) {
		pem, err = os.ReadFile(file)
		return err
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return roots, file
}

// caddyRootFile is the file of caddyRoots.
func caddyRootFile(t *testing.T) string {
	_, file := caddyRoots(t)
	return file
}

// http2Site starts an HTTPS site for hosts (each NAME.localhost) on a
// free port, with Caddy's internal CA, serving the inlets handler, and an
// inlets client process connected to it over wss:// with upstreams, the
// client's --upstream values. It returns the port, the CA's roots and the
// client process.
func http2Site(t *testing.T, id string, hosts []string, upstreams ...string) (int, *x509.CertPool, *testenv.Process) {
	t.Helper()
	port := testenv.FreePort(t)
	addrs := []string{fmt.Sprintf("https://localhost:%d", port)}
	for _, h := range hosts {
		addrs = append(addrs, fmt.Sprintf("https://%s:%d", h, port))
	}
	testenv.StartCaddy(t, adminPort, "", fmt.Sprintf("%s {\n\ttls internal\n\t%s\n}", strings.Join(addrs, ", "), inletsBoth))
	roots, rootFile := caddyRoots(t)
	p := testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--id", id, "--token", testenv.Token,
		"--url", fmt.Sprintf("wss://localhost:%d", port), "--tls-ca", rootFile, "--upstream-insecure-skip-verify",
		"--upstream", strings.Join(upstreams, ","))
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(sessionsOf(id)) == 0 {
			return fmt.Errorf("client %s has no session", id)
		}
		return nil
	})
	return port, roots, p
}

// grpcurl runs grpcurl against the site at port for host, and returns
// its output and whether it exited 0.
func grpcurl(t *testing.T, port int, host string, args ...string) (string, bool) {
	t.Helper()
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		if gobin, _ := exec.Command("go", "env", "GOPATH").Output(); len(gobin) > 0 {
			bin = filepath.Join(strings.TrimSpace(string(gobin)), "bin", "grpcurl")
		}
		if _, err := os.Stat(bin); err != nil {
			t.Skip("grpcurl not installed (CI installs it, see .ci/run: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4)")
		}
	}
	_, rootFile := caddyRoots(t)
	// grpcurl [flags] ADDRESS (list | METHOD): the last argument follows
	// the address.
	full := append([]string{"-cacert", rootFile, "-authority", host}, args[:len(args)-1]...)
	full = append(full, fmt.Sprintf("127.0.0.1:%d", port), args[len(args)-1])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	return string(out), err == nil
}

// TestGRPCThroughAnH2CTunnelWithGrpcurl exposes a gRPC server (with
// reflection and the health service) as an h2c:// upstream, and another
// as an h2:// upstream (gRPC over TLS): grpcurl, over TLS to Caddy, lists
// the services and calls unary and server-streaming methods, and sees the
// upstream's trailers; a deadline the caller sets reaches the upstream and
// comes back as DeadlineExceeded.
func TestGRPCThroughAnH2CTunnelWithGrpcurl(t *testing.T) {
	plain, secure := newGRPCUpstream(t, "grpc-h2c", false), newGRPCUpstream(t, "grpc-tls", true)
	port, _, _ := http2Site(t, "grpc-client", []string{"grpc.localhost", "grpcs.localhost"},
		"grpc.localhost=h2c://"+plain.addr, "grpcs.localhost=h2://"+secure.addr)

	out, ok := grpcurl(t, port, "grpc.localhost", "list")
	for _, svc := range []string{echoServiceName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !ok || !strings.Contains(out, svc) {
			t.Errorf("grpcurl list: ok=%v, want %s in:\n%s", ok, svc, out)
		}
	}
	out, ok = grpcurl(t, port, "grpc.localhost", "-v", "-d", `"hello"`, echoServiceName+"/Say")
	if !ok || !strings.Contains(out, `"grpc-h2c: hello"`) || !strings.Contains(out, "x-upstream: grpc-h2c") {
		t.Errorf("grpcurl Say: ok=%v, want the upstream's answer and its trailer x-upstream:\n%s", ok, out)
	}
	out, ok = grpcurl(t, port, "grpc.localhost", "-d", `{"service":"`+echoServiceName+`"}`, "grpc.health.v1.Health/Check")
	if !ok || !strings.Contains(out, `"SERVING"`) {
		t.Errorf("grpcurl health check: ok=%v:\n%s", ok, out)
	}
	out, ok = grpcurl(t, port, "grpc.localhost", "-d", "5", echoServiceName+"/Count")
	if fields := strings.Fields(out); !ok || strings.Join(fields, " ") != "1 2 3 4 5" {
		t.Errorf("grpcurl Count 5 (server streaming): ok=%v, want 1 to 5 in order:\n%s", ok, out)
	}
	out, ok = grpcurl(t, port, "grpc.localhost", "-max-time", "0.5", "-d", `"10s"`, echoServiceName+"/Sleep")
	if ok || !strings.Contains(out, "DeadlineExceeded") {
		t.Errorf("grpcurl Sleep 10s with -max-time 0.5: ok=%v, want DeadlineExceeded:\n%s", ok, out)
	}
	if d := plain.sawDeadlines(); len(d) != 1 || d[0] <= 0 || d[0] > 500*time.Millisecond {
		t.Errorf("deadlines the upstream saw: %v, want one, under 500ms: the caller's grpc-timeout went through", d)
	}
	out, ok = grpcurl(t, port, "grpcs.localhost", "-d", `"over TLS"`, echoServiceName+"/Say")
	if !ok || !strings.Contains(out, `"grpc-tls: over TLS"`) {
		t.Errorf("grpcurl Say to the h2:// upstream: ok=%v:\n%s", ok, out)
	}
}

// TestGRPCBidirectionalStreamAndUpstreamDeadlineThroughTheTunnel: a
// bidirectional stream of 1,000 messages arrives whole and in order, and
// a DeadlineExceeded the upstream returns reaches the caller with its
// message.
func TestGRPCBidirectionalStreamAndUpstreamDeadlineThroughTheTunnel(t *testing.T) {
	up := newGRPCUpstream(t, "grpc-bidi", false)
	port, roots, _ := http2Site(t, "grpc-bidi-client", []string{"grpc.localhost"}, "grpc.localhost=h2c://"+up.addr)
	conn := grpcConn(t, fmt.Sprintf("127.0.0.1:%d", port), "grpc.localhost", &tls.Config{RootCAs: roots})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/"+echoServiceName+"/Chat")
	if err != nil {
		t.Fatal(err)
	}
	const messages = 1000
	sent := make(chan error, 1)
	go func() {
		for i := range messages {
			if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("message %d %s", i, strings.Repeat("x", i)))); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	for i := range messages {
		got := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(got); err != nil {
			t.Fatalf("receiving message %d: %v", i, err)
		}
		if want := fmt.Sprintf("grpc-bidi: message %d %s", i, strings.Repeat("x", i)); got.Value != want {
			t.Fatalf("message %d: got %.40q…, want %.40q…", i, got.Value, want)
		}
	}
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Fatalf("after %d messages: %v, want the stream's end", messages, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}

	err = conn.Invoke(ctx, "/"+echoServiceName+"/Overrun", new(emptypb.Empty), new(emptypb.Empty))
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || st.Message() != "grpc-bidi: the backend's query ran out of time" {
		t.Errorf("Overrun: %v, want the upstream's DeadlineExceeded and its message", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	err = conn.Invoke(short, "/"+echoServiceName+"/Sleep", durationpb.New(10*time.Second), new(emptypb.Empty))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Sleep 10s within 300ms: %v, want DeadlineExceeded", err)
	}
	// The upstream let go of the call when its deadline passed: a
	// unary call on the same connection is answered at once.
	reply := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, "/"+echoServiceName+"/Say", wrapperspb.String("after"), reply); err != nil || reply.Value != "grpc-bidi: after" {
		t.Errorf("Say after the deadline: %q, %v", reply.Value, err)
	}
}

// A gRPC call whose deadline passes at the upstream, which grpc-go ends
// by resetting the stream with CANCEL, ends with DEADLINE_EXCEEDED in its
// trailers, not reverse_proxy's 502, which a gRPC client reads as
// UNAVAILABLE. The caller sends grpc-timeout without a timer of its own,
// and the upstream's handler (Stall) ignores the deadline, so that only
// the reset ends the call. A gRPC client's own timer, racing the
// upstream's, made TestGRPCBidirectionalStream… flaky before.
func TestAGRPCCallWhoseDeadlinePassesAtTheUpstreamIsDeadlineExceeded(t *testing.T) {
	up := newGRPCUpstream(t, "grpc-deadline", false)
	port, roots, _ := http2Site(t, "grpc-deadline-client", []string{"grpc.localhost"}, "grpc.localhost=h2c://"+up.addr)
	msg, err := proto.Marshal(durationpb.New(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	h2 := h2Visitor(roots, port)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://grpc.localhost:%d/%s/Stall", port, echoServiceName), bytes.NewReader(frame))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Grpc-Timeout", "300m")
	started := time.Now()
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/grpc" ||
		resp.Trailer.Get("Grpc-Status") != "4" || resp.Trailer.Get("Grpc-Message") != "the call's deadline passed at the upstream" {
		t.Fatalf("Stall 2s with grpc-timeout 300m: %d %v, trailers %v, body %q; want 200, application/grpc and grpc-status 4 with the tunnel's message", resp.StatusCode, resp.Header, resp.Trailer, body)
	}
	if took := time.Since(started); took < 300*time.Millisecond {
		t.Fatalf("answered after %v, before the deadline", took)
	}
	if n := up.calls.Load(); n > 1 {
		t.Fatalf("the upstream saw %d calls, want 1 at most", n)
	}
}

// TestHTTP2AndHTTP3VisitorsReachHTTP11AndH2CUpstreams: visitors over
// HTTP/2 and HTTP/3 (quic-go's client; Caddy serves h3 itself) reach an
// HTTP/1.1 upstream and an h2c upstream through the same client, which
// the upstreams see as HTTP/1.1 and HTTP/2 respectively.
func TestHTTP2AndHTTP3VisitorsReachHTTP11AndH2CUpstreams(t *testing.T) {
	web := newUpstream(t, "web")
	h2c := newH2CUpstream(t, "h2c-web")
	port, roots, _ := http2Site(t, "h2-client", []string{"web.localhost", "h2c.localhost"},
		"web.localhost="+web.URL, "h2c.localhost=h2c://"+h2c)
	local := fmt.Sprintf("127.0.0.1:%d", port)
	h2 := h2Visitor(roots, port)
	h3Transport := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, local, tlsCfg, cfg)
		},
	}
	t.Cleanup(func() { h3Transport.Close() })
	h3 := &http.Client{Timeout: 10 * time.Second, Transport: h3Transport}

	for _, visitor := range []struct {
		name   string
		client *http.Client
		proto  string
	}{{"HTTP/2", h2, "HTTP/2.0"}, {"HTTP/3", h3, "HTTP/3.0"}} {
		for _, target := range []struct{ host, want string }{
			{"web.localhost", `"upstream":"web"`},
			{"h2c.localhost", "h2c-web HTTP/2.0 h2c.localhost"},
		} {
			var resp *http.Response
			var body []byte
			// Caddy's h3 listener may take a moment after the config loads.
			testenv.Eventually(t, 10*time.Second, func() error {
				r, err := visitor.client.Get(fmt.Sprintf("https://%s:%d/proto", target.host, port))
				if err != nil {
					return err
				}
				body, _ = io.ReadAll(r.Body)
				r.Body.Close()
				resp = r
				return nil
			})
			if resp.StatusCode != http.StatusOK || resp.Proto != visitor.proto || !strings.Contains(string(body), target.want) {
				t.Errorf("%s visitor to %s: %s %d %q, want %s 200 with %q", visitor.name, target.host, resp.Proto, resp.StatusCode, body, visitor.proto, target.want)
			}
		}
	}
}

// An h2c upstream that refuses a request before its body has all come:
// Caddy's HTTP/2 transport then closes the body while it is reading it.
// The HTTP/2 visitor gets the refusal while its body is still open, and
// its next request has its body echoed whole. Under -race this failed in
// reverse_proxy's wrapper of the body, closed during a read (see
// handler.closeAfterRead). (An HTTP/1.1 visitor that waits for the answer
// before it ends its body waits for ever, through the tunnel or not: an
// HTTP/1.1 request body cannot be closed while it is being read.)
func TestAnH2CUpstreamMayRefuseABodyBeforeItEnds(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "refused before the body", http.StatusForbidden)
			return
		}
		io.Copy(w, r.Body)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	port, roots, _ := http2Site(t, "h2c-refuser", []string{"h2c.localhost"}, "h2c.localhost=h2c://"+srv.Listener.Addr().String())
	visitor := h2Visitor(roots, port)
	for i := range 5 {
		body, more := io.Pipe()
		go more.Write([]byte("the first part"))
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://h2c.localhost:%d/refuse", port), body)
		resp, err := visitor.Do(req)
		if err != nil {
			t.Fatalf("request %d, its body open: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		more.Close()
		if resp.StatusCode != http.StatusForbidden || resp.ProtoMajor != 2 || !strings.Contains(string(got), "refused before the body") {
			t.Fatalf("request %d, its body open: %s %d %q, want the upstream's 403 over HTTP/2", i, resp.Proto, resp.StatusCode, got)
		}

		want := strings.Repeat(fmt.Sprintf("body %d, ", i), 1000)
		resp, err = visitor.Post(fmt.Sprintf("https://h2c.localhost:%d/echo", port), "text/plain", strings.NewReader(want))
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		got, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != want {
			t.Fatalf("echo %d: %d, %d bytes, want 200 and the %d bytes sent", i, resp.StatusCode, len(got), len(want))
		}
	}
}

// Two clients serve one gRPC host, one of them with its h2c upstream
// down: every call is answered, by the other client's upstream, whatever
// the balancer picks first, and none reaches an upstream twice.
func TestGRPCCallsGoToTheClientWhoseUpstreamIsUp(t *testing.T) {
	up := newGRPCUpstream(t, "grpc-up", false)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := closed.Addr().String()
	closed.Close()
	port, roots, downClient := http2Site(t, "grpc-down-client", []string{"grpc.localhost"}, "grpc.localhost=h2c://"+down)
	testenv.Start(t, testenv.Binary(t, "inlets"), "http", "client", "--id", "grpc-up-client", "--token", testenv.Token,
		"--url", fmt.Sprintf("wss://localhost:%d", port), "--tls-ca", caddyRootFile(t),
		"--upstream", "grpc.localhost=h2c://"+up.addr)
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(sessionsOf("grpc-up-client")) == 0 {
			return fmt.Errorf("the second client has no session")
		}
		return nil
	})

	const calls = 100
	for i := range calls {
		// A connection of its own for each call, so that the balancer
		// chooses again.
		conn := grpcConn(t, fmt.Sprintf("127.0.0.1:%d", port), "grpc.localhost", &tls.Config{RootCAs: roots})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		reply := new(wrapperspb.StringValue)
		err := conn.Invoke(ctx, "/"+echoServiceName+"/Say", wrapperspb.String(fmt.Sprint(i)), reply)
		cancel()
		conn.Close()
		if want := fmt.Sprintf("grpc-up: %d", i); err != nil || reply.Value != want {
			t.Fatalf("call %d: %q, %v; want %q", i, reply.Value, err, want)
		}
	}
	if n := up.calls.Load(); n != calls {
		t.Errorf("the upstream served %d calls, want %d: each once", n, calls)
	}
	// The balancer did offer calls to the client whose upstream is down:
	// the calls above were moved, not merely never sent there.
	if !strings.Contains(downClient.Output(), "upstream unreachable") {
		t.Errorf("the client whose upstream is down was never offered a call:\n%s", downClient.Output())
	}
}
