package tunnel

import (
	"context"
	"io"
	"testing"
)

// muxPair returns both sides of a session over a real WebSocket on loopback,
// with its control stream open.
func muxPair(b testing.TB) (server, client *Session) {
	return muxPairWith(b, Config{}, Config{})
}

// muxPairWith is muxPair with each side's configuration.
func muxPairWith(b testing.TB, scfg, ccfg Config) (server, client *Session) {
	cws, sws := wsPair(b)
	server, err := ServerSession(NewConn(sws, ServerSide), scfg)
	if err != nil {
		b.Fatal(err)
	}
	client, err = ClientSession(NewConn(cws, ClientSide), ccfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { server.Close(); client.Close() })
	ctrl, err := server.openControl()
	if err != nil {
		b.Fatal(err)
	}
	ctrl.Write([]byte{0})
	if _, err := client.acceptControl(context.Background()); err != nil {
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
	st, err := server.Open(context.Background())
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

// BenchmarkStreamOpen opens a data stream with a header and a request
// behind it, has the client read the header, reply and answer, as a
// client does once it has connected the upstream, and closes it: the
// fixed cost of each tunneled connection.
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
				if ReadFrame(st, MaxStreamHeaderSize, &h) != nil || Reply(st, "", "") != nil {
					return
				}
				io.ReadFull(st, make([]byte, 4))
				st.Write([]byte("pong"))
				// The server closes the stream once it has the answer.
				io.Copy(io.Discard, st)
				st.Close()
			}(st)
		}
	}()
	hdr := StreamHeader{Kind: KindTCP, Port: 2222, RemoteAddr: "203.0.113.7:51000", LocalAddr: "192.0.2.1:2222"}
	next := func(refused error) (*Session, error) {
		if refused != nil {
			return nil, refused
		}
		return server, nil
	}
	answer := make([]byte, 4)
	b.ReportAllocs()
	for b.Loop() {
		d, err := OpenData(context.Background(), hdr, next)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Write([]byte("ping")); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(d, answer); err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}
