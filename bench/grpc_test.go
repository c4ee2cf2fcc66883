package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// serveGRPC serves desc on 127.0.0.1 in clear text until the test ends.
func serveGRPC(t *testing.T, desc *grpc.ServiceDesc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(desc, struct{}{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func TestGRPCLoadCountsAnsweredCallsAndRefusesWrongAnswers(t *testing.T) {
	ctx := context.Background()
	l, err := loadGRPC(ctx, serveGRPC(t, &grpcEcho), 16, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if l.calls == 0 || l.errors != 0 || l.cps <= 0 || l.p50 <= 0 || l.p99 < l.p50 {
		t.Errorf("against the echo service: %+v, want calls, no errors, p50 ≤ p99", l)
	}

	wrong := grpcEcho
	wrong.Methods = []grpc.MethodDesc{{MethodName: "Say",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(wrapperspb.StringValue)); err != nil {
				return nil, err
			}
			return wrapperspb.String("an error page"), nil
		}}}
	_, err = loadGRPC(ctx, serveGRPC(t, &wrong), 2, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no call") || !strings.Contains(err.Error(), `answered "an error page"`) {
		t.Errorf("against a service answering another value: %v, want no call counted and the wrong answer named", err)
	}
}

func TestGRPCSectionComparesTheTunnelWithReverseProxyAtEachCallerCount(t *testing.T) {
	r := newResults()
	r.params = quickParams
	cpu := map[string]time.Duration{roleLoad: time.Second, roleCaddy: time.Second}
	for _, x := range []struct {
		callers int
		subject string
		cps     float64
	}{
		{16, subjectDirect, 50000}, {16, subjectProxy, 10000}, {16, subjectHTTPTunnel, 8500},
		{64, subjectDirect, 50000}, {64, subjectProxy, 10000}, {64, subjectHTTPTunnel, 9500},
	} {
		r.grpc[grpcKey{x.callers, x.subject}] = []grpcLoad{{cps: x.cps, p50: 1e-3, p99: 4e-3, calls: x.cps, cpu: cpu}}
	}
	md := r.markdown()
	for _, want := range []string{
		"## 14. gRPC unary calls",
		"| 16 | HTTP tunnel | 8500 | 1.00ms | 4.00ms | 0 | 8500 |",
		"| 16 | **0.85** | 1.00 | **0.17** | 0.20 |",
		"| gRPC unary calls through the HTTP tunnel ≥ 0.9 × reverse_proxy calls/s, 16 callers | 0.85 (8500 vs 10000 calls/s) | **not met** |",
		"| gRPC unary calls through the HTTP tunnel ≥ 0.9 × reverse_proxy calls/s, 64 callers | 0.95 (9500 vs 10000 calls/s) | **met** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in:\n%s", want, md)
		}
	}
	if strings.Contains(md, "%!") {
		t.Errorf("a formatting error in:\n%s", md)
	}
}
