package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The gRPC upstream's service, inlets.test.Echo, is written without
// generated code: its messages are protobuf's well-known wrappers, and its
// file descriptor is registered so that reflection (and grpcurl) can
// describe it.
//
//	service Echo {
//	  rpc Say(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	  rpc Count(google.protobuf.Int32Value) returns (stream google.protobuf.Int32Value);
//	  rpc Chat(stream google.protobuf.StringValue) returns (stream google.protobuf.StringValue);
//	  rpc Sleep(google.protobuf.Duration) returns (google.protobuf.Empty);
//	  rpc Overrun(google.protobuf.Empty) returns (google.protobuf.Empty);
//	}
const echoServiceName = "inlets.test.Echo"

var registerEchoOnce sync.Once

func registerEchoDescriptor(t *testing.T) {
	registerEchoOnce.Do(func() {
		method := func(name, in, out string, clientStreams, serverStreams bool) *descriptorpb.MethodDescriptorProto {
			return &descriptorpb.MethodDescriptorProto{
				Name: proto.String(name), InputType: proto.String(".google.protobuf." + in), OutputType: proto.String(".google.protobuf." + out),
				ClientStreaming: proto.Bool(clientStreams), ServerStreaming: proto.Bool(serverStreams),
			}
		}
		fd := &descriptorpb.FileDescriptorProto{
			Name:       proto.String("inlets/test/echo.proto"),
			Package:    proto.String("inlets.test"),
			Syntax:     proto.String("proto3"),
			Dependency: []string{"google/protobuf/wrappers.proto", "google/protobuf/duration.proto", "google/protobuf/empty.proto"},
			Service: []*descriptorpb.ServiceDescriptorProto{{
				Name: proto.String("Echo"),
				Method: []*descriptorpb.MethodDescriptorProto{
					method("Say", "StringValue", "StringValue", false, false),
					method("Count", "Int32Value", "Int32Value", false, true),
					method("Chat", "StringValue", "StringValue", true, true),
					method("Sleep", "Duration", "Empty", false, false),
					method("Overrun", "Empty", "Empty", false, false),
					method("Stall", "Duration", "Empty", false, false),
				},
			}},
		}
		// Their Go packages register the well-known files on import.
		_, _, _ = wrapperspb.String(""), durationpb.New(0), new(emptypb.Empty)
		file, err := protodesc.NewFile(fd, protoregistry.GlobalFiles)
		if err == nil {
			err = protoregistry.GlobalFiles.RegisterFile(file)
		}
		if err != nil {
			panic(err)
		}
	})
}

// grpcUpstream is a gRPC server behind a tunnel client, with reflection
// and the health service.
type grpcUpstream struct {
	name string
	addr string
	// deadlines records the deadline each Sleep call saw, as the time
	// left when it started (0: none).
	mu        sync.Mutex
	deadlines []time.Duration
	// calls counts the calls served.
	calls atomic.Int64
}

func (u *grpcUpstream) sawDeadlines() []time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]time.Duration(nil), u.deadlines...)
}

// newGRPCUpstream serves inlets.test.Echo on 127.0.0.1, in clear text
// (an h2c:// upstream), or over TLS with a self-signed certificate when
// withTLS (an h2:// upstream).
func newGRPCUpstream(t *testing.T, name string, withTLS bool) *grpcUpstream {
	t.Helper()
	registerEchoDescriptor(t)
	u := &grpcUpstream{name: name}
	var opts []grpc.ServerOption
	if withTLS {
		cert := httptest.NewUnstartedServer(nil)
		cert.StartTLS()
		tlsCfg := cert.TLS.Clone()
		cert.Close()
		tlsCfg.NextProtos = []string{"h2"}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: echoServiceName,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Say", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				u.calls.Add(1)
				grpc.SetTrailer(ctx, metadata.Pairs("x-upstream", name))
				return wrapperspb.String(name + ": " + in.Value), nil
			}},
			{MethodName: "Sleep", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(durationpb.Duration)
				if err := dec(in); err != nil {
					return nil, err
				}
				u.calls.Add(1)
				var left time.Duration
				if d, ok := ctx.Deadline(); ok {
					left = time.Until(d)
				}
				u.mu.Lock()
				u.deadlines = append(u.deadlines, left)
				u.mu.Unlock()
				select {
				case <-time.After(in.AsDuration()):
					return new(emptypb.Empty), nil
				case <-ctx.Done():
					return nil, status.FromContextError(ctx.Err()).Err()
				}
			}},
			{MethodName: "Stall", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				// As Sleep, deaf to the call's deadline: only grpc-go's
				// reset of the stream ends the call for its caller.
				in := new(durationpb.Duration)
				if err := dec(in); err != nil {
					return nil, err
				}
				u.calls.Add(1)
				time.Sleep(in.AsDuration())
				return new(emptypb.Empty), nil
			}},
			{MethodName: "Overrun", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				if err := dec(new(emptypb.Empty)); err != nil {
					return nil, err
				}
				u.calls.Add(1)
				// The upstream's own work has a deadline, which passes.
				work, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				<-work.Done()
				return nil, status.Error(codes.DeadlineExceeded, name+": the backend's query ran out of time")
			}},
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "Count", ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
				in := new(wrapperspb.Int32Value)
				if err := stream.RecvMsg(in); err != nil {
					return err
				}
				u.calls.Add(1)
				for i := range in.Value {
					if err := stream.SendMsg(wrapperspb.Int32(i + 1)); err != nil {
						return err
					}
				}
				return nil
			}},
			{StreamName: "Chat", ServerStreams: true, ClientStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
				u.calls.Add(1)
				for {
					in := new(wrapperspb.StringValue)
					if err := stream.RecvMsg(in); errors.Is(err, io.EOF) {
						return nil
					} else if err != nil {
						return err
					}
					if err := stream.SendMsg(wrapperspb.String(name + ": " + in.Value)); err != nil {
						return err
					}
				}
			}},
		},
		Metadata: "inlets/test/echo.proto",
	}, struct{}{})
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus(echoServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, healthSrv)
	reflection.Register(s)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return u
}

// newH2CUpstream is a plain HTTP/2 server without TLS (prior knowledge
// only), answering each request with its protocol and upstream name.
func newH2CUpstream(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" "+r.Proto+" "+r.Host)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// grpcConn dials the server's TLS site as a gRPC client would dial host.
func grpcConn(t *testing.T, addr, host string, tlsCfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	cfg := tlsCfg.Clone()
	cfg.ServerName = host
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)), grpc.WithAuthority(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
