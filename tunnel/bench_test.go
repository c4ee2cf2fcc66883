package tunnel

import (
	"context"
	"io"
	"testing"
)

// muxPair returns both sides of a session over a real WebSocket on loopback,
// with its control stream open.
func muxPair(b testing.TB) (server, client *Session) {
	cws, sws := wsPair(b)
	server, err := ServerSession(NewConn(sws, ServerSide), ServerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	client, err = ClientSession(NewConn(cws, ClientSide), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { server.Close(); client.Close() })
	// Stream 1 is the control stream, which the server's police watches:
	// data streams come after it.
	ctrl, err := server.Open()
	if err != nil {
		b.Fatal(err)
	}
	ctrl.Write([]byte{0})
	if _, err := client.Accept(context.Background()); err != nil {
		b.Fatal(err)
	}
	return server, client
}

// BenchmarkConnWrite measures the WebSocket adapter alone: 32 KiB writes
// from the client side (masked, as a tunnel client sends responses).
func BenchmarkConnWrite(b *testing.B) {
	cws, sws := wsPair(b)
	client, server := NewConn(cws, ClientSide), NewConn(sws, ServerSide)
	go io.Copy(io.Discard, server)
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamThroughput moves bytes client → server over one stream,
// the direction of a download through the tunnel.
func BenchmarkStreamThroughput(b *testing.B) {
	server, client := muxPair(b)
	go func() {
		st, err := client.Accept(context.Background())
		if err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
	}()
	st, err := server.Open()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.ReadFull(st, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamOpen opens a stream with a header, has the client read
// the header and answer with its reply, as a client does once it has
// connected the upstream, and closes it: the fixed cost of each tunneled
// connection.
func BenchmarkStreamOpen(b *testing.B) {
	server, client := muxPair(b)
	go func() {
		for {
			st, err := client.Accept(context.Background())
			if err != nil {
				return
			}
			go func(st *Stream) {
				var h StreamHeader
				if ReadFrame(st, MaxStreamHeaderSize, &h) == nil {
					WriteFrame(st, StreamReply{})
				}
				// The server closes the stream once it has the reply.
				io.Copy(io.Discard, st)
				st.Close()
			}(st)
		}
	}()
	hdr := StreamHeader{Kind: KindTCP, Port: 2222, RemoteAddr: "203.0.113.7:51000", LocalAddr: "192.0.2.1:2222"}
	b.ReportAllocs()
	for b.Loop() {
		st, err := server.Open()
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteFrame(st, hdr); err != nil {
			b.Fatal(err)
		}
		if r, err := ReadReply(st); err != nil || r.Error != "" {
			b.Fatal(r, err)
		}
		st.Close()
	}
}
