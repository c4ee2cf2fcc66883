package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// offerTo returns a next function for OpenData that offers the stream to
// sessions in turn, and records the refusals it is told of.
func offerTo(sessions ...*Session) (next func(error) (*Session, error), refusals *[]error) {
	refusals = new([]error)
	next = func(refused error) (*Session, error) {
		if refused != nil {
			*refusals = append(*refusals, refused)
		}
		if len(sessions) == 0 {
			return nil, errors.New("no client left")
		}
		s := sessions[0]
		sessions = sessions[1:]
		return s, nil
	}
	return next, refusals
}

// acceptHeader accepts the next data stream on client and reads its header.
func acceptHeader(t *testing.T, client *Session) (*Stream, StreamHeader) {
	t.Helper()
	st, err := client.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var h StreamHeader
	if err := ReadFrame(st, MaxStreamHeaderSize, &h); err != nil {
		t.Fatal(err)
	}
	return st, h
}

// readWithin reads what arrives on st within d.
func readWithin(st *Stream, d time.Duration) []byte {
	st.SetReadDeadline(time.Now().Add(d))
	defer st.SetReadDeadline(time.Time{})
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := st.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got
		}
	}
}

var tcpHeader = StreamHeader{Kind: KindTCP, Port: 2222, RemoteAddr: "203.0.113.7:51000", LocalAddr: "192.0.2.1:2222"}

// In version 3 the visitor's first bytes follow the header at once: the
// client has them before it replies.
func TestDataSendsTheVisitorsBytesBeforeTheReply(t *testing.T) {
	server, client := muxPair(t)
	next, _ := offerTo(server)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	st, h := acceptHeader(t, client)
	if h != tcpHeader {
		t.Fatalf("header %+v", h)
	}
	got := make([]byte, len("GET / HTTP/1.1\r\n\r\n"))
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(st, got); err != nil {
		t.Fatalf("the request before the reply: %v", err)
	}
	if err := Reply(st, "", ""); err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	answer := make([]byte, len("HTTP/1.1 200 OK\r\n\r\n"))
	if _, err := io.ReadFull(d, answer); err != nil || string(answer) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("the answer: %q, %v", answer, err)
	}
}

// A version 2 session is served as version 2 asks: nothing but the header
// before the client's reply.
func TestDataWaitsForTheReplyOfAVersion2Client(t *testing.T) {
	server, client := muxPair(t)
	server.SetProtocol(2)
	next, _ := offerTo(server)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := d.Write([]byte("request"))
		if err == nil {
			err = d.CloseWrite()
		}
		wrote <- err
	}()
	go io.Copy(io.Discard, d) // the relay's reader, which takes the reply
	st, _ := acceptHeader(t, client)
	if early := readWithin(st, 300*time.Millisecond); len(early) > 0 {
		t.Fatalf("a version 2 client got %q before it replied", early)
	}
	if err := Reply(st, "", ""); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(st)
	if err != nil || string(got) != "request" {
		t.Fatalf("after the reply: %q, %v; want the request, then EOF", got, err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// A client that cannot reach its upstream replies so, having forwarded
// nothing; the visitor's stream moves to the next client, header, early
// bytes and half-close, and only that one's upstream sees them.
func TestDataMovesToTheNextClientWhenOneRefuses(t *testing.T) {
	server1, client1 := muxPair(t)
	server2, client2 := muxPair(t)
	next, refusals := offerTo(server1, server2)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	request := bytes.Repeat([]byte("POST body "), 1000)
	if _, err := d.Write(request); err != nil {
		t.Fatal(err)
	}
	d.CloseWrite()
	answer := make(chan []byte, 1)
	go func() {
		got, _ := io.ReadAll(d)
		answer <- got
	}()

	st1, _ := acceptHeader(t, client1)
	if err := Reply(st1, StreamUpstreamUnreachable, "connection refused"); err == nil {
		t.Fatal("a refusal: no error")
	}
	st2, h := acceptHeader(t, client2)
	if h != tcpHeader {
		t.Fatalf("the second client's header: %+v", h)
	}
	if err := Reply(st2, "", ""); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(st2)
	if err != nil || !bytes.Equal(got, request) {
		t.Fatalf("the second client read %d bytes (%v), want the %d of the request, then EOF", len(got), err, len(request))
	}
	st2.Write([]byte("201 Created"))
	st2.CloseWrite()
	if got := <-answer; string(got) != "201 Created" {
		t.Fatalf("the visitor read %q", got)
	}
	var re *ReplyError
	if len(*refusals) != 1 || !errors.As((*refusals)[0], &re) || re.Code != StreamUpstreamUnreachable || re.Reason != "connection refused" {
		t.Fatalf("refusals: %v", *refusals)
	}
}

// Once no client is left, the visitor's side fails with what next says.
func TestDataFailsOnceNoClientIsLeft(t *testing.T) {
	server, client := muxPair(t)
	next, _ := offerTo(server)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write([]byte("hello"))
	st, _ := acceptHeader(t, client)
	Reply(st, StreamUnknownTarget, "no such port")
	if _, err := d.Read(make([]byte, 1)); err == nil || err.Error() != "no client left" {
		t.Fatalf("Read: %v", err)
	}
	if _, err := d.Write([]byte("more")); err == nil || err.Error() != "no client left" {
		t.Fatalf("Write: %v", err)
	}
}

// At most MaxEarlyData goes before the reply; the rest follows it.
func TestDataSendsAtMostMaxEarlyDataBeforeTheReply(t *testing.T) {
	server, client := muxPair(t)
	next, _ := offerTo(server)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	body := bytes.Repeat([]byte{7}, 3*MaxEarlyData)
	wrote := make(chan error, 1)
	go func() {
		_, err := d.Write(body)
		wrote <- err
	}()
	go io.Copy(io.Discard, d)
	st, _ := acceptHeader(t, client)
	early := readWithin(st, 500*time.Millisecond)
	if len(early) != MaxEarlyData {
		t.Fatalf("%d bytes before the reply, want %d", len(early), MaxEarlyData)
	}
	if err := Reply(st, "", ""); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, len(body)-len(early))
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(st, rest); err != nil {
		t.Fatalf("the rest after the reply: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// A client that never replies: the visitor's side gives up after the
// caller's read deadline, rather than StreamReplyTimeout.
func TestDataHonoursTheReadDeadlineWhileWaitingForTheReply(t *testing.T) {
	server, client := muxPair(t)
	next, _ := offerTo(server)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write([]byte("hello"))
	acceptHeader(t, client)
	d.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Read returned after %s", took)
	}
}

// A client's Go Away retires its session: the server sees it (Retired),
// opens no more streams on it, and offers the next visitor to another
// session; a stream open on it carries on both ways.
func TestGoAwayRetiresASessionAndItsOpenStreamsCarryOn(t *testing.T) {
	server, client := muxPair(t)
	other, otherClient := muxPair(t)
	open, accepted := streamPair(t, server, client)
	retired := make(chan struct{})
	server.OnRetired(func() { close(retired) })
	if err := client.GoAway(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-retired:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not see the client's Go Away")
	}
	next, refusals := offerTo(server, other)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, h := acceptHeader(t, otherClient); h != tcpHeader {
		t.Fatalf("header on the other session: %+v", h)
	}
	if len(*refusals) != 1 || !strings.Contains((*refusals)[0].Error(), "go away") {
		t.Errorf("refusals %v, want the retired session's", *refusals)
	}
	for _, pair := range [][2]*Stream{{open, accepted}, {accepted, open}} {
		if _, err := pair[0].Write([]byte("still")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		pair[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(pair[1], got); err != nil || string(got) != "still" {
			t.Fatalf("a stream open before the Go Away: %q, %v", got, err)
		}
	}
}

// AwaitReply gives up when its context ends, well before
// StreamReplyTimeout, on a client that never replies.
func TestAwaitReplyEndsWithItsContext(t *testing.T) {
	server, client := muxPair(t)
	next, _ := offerTo(server)
	d, err := OpenData(context.Background(), tcpHeader, next)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	acceptHeader(t, client) // and never reply
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.AwaitReply(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("AwaitReply succeeded without a reply")
		}
	case <-time.After(StreamReplyTimeout / 2):
		t.Fatal("AwaitReply did not end with its context")
	}
}
