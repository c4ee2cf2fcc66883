package tunnel

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"
)

// fuzzChunks cuts data into chunks whose sizes the fuzzer chooses: each
// byte of sizes, in turn and over again, gives the next chunk's size. A
// zero byte is an empty chunk; 0xf0 and above are chunks of 1 to 16 KiB;
// other bytes are their own size. No sizes means one chunk, the whole.
func fuzzChunks(sizes, data []byte) [][]byte {
	if len(sizes) == 0 {
		return [][]byte{data}
	}
	var chunks [][]byte
	for i := 0; len(data) > 0; i++ {
		b := sizes[i%len(sizes)]
		n := int(b)
		if b >= 0xf0 {
			n = int(b-0xef) << 10
		}
		if n == 0 && i >= len(sizes) && allZero(sizes) {
			n = len(data) // only empty chunks: end with the rest
		}
		n = min(n, len(data))
		chunks = append(chunks, data[:n:n])
		data = data[n:]
	}
	return chunks
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// fuzzFrames is the reference reading of a yamux byte stream: the headers
// of the frames in it, in order, and where the stream ends: in a header,
// after partial of its bytes, or in a body, with body bytes still to come.
func fuzzFrames(data []byte) (headers []yamuxHeader, partial, body int) {
	pos := 0
	for pos+yamuxHeaderSize <= len(data) {
		var h yamuxHeader
		copy(h[:], data[pos:])
		headers = append(headers, h)
		pos += yamuxHeaderSize + h.bodyLen()
	}
	if pos > len(data) {
		return headers, 0, pos - len(data)
	}
	return headers, len(data) - pos, 0
}

// FuzzFrameCursor scans a byte stream in chunks of every size and checks
// that the cursor sees the same headers as a scan of the whole stream in
// one call, and as the reference reading.
func FuzzFrameCursor(f *testing.F) {
	f.Fuzz(func(t *testing.T, sizes, data []byte) {
		scanAll := func(chunks [][]byte) (*frameCursor, []yamuxHeader) {
			var c frameCursor
			var seen []yamuxHeader
			for _, chunk := range chunks {
				c.scan(chunk, func(h *yamuxHeader) { seen = append(seen, *h) })
				if c.left() <= 0 {
					t.Fatalf("left() = %d: the cursor would not move on", c.left())
				}
				if c.atBoundary() != (c.headerLen == 0 && c.body == 0) {
					t.Fatalf("atBoundary() = %v with %d header bytes and %d body bytes", c.atBoundary(), c.headerLen, c.body)
				}
			}
			return &c, seen
		}
		whole, wantSeen := scanAll([][]byte{data})
		chunked, seen := scanAll(fuzzChunks(sizes, data))
		if len(seen) != len(wantSeen) {
			t.Fatalf("chunked scan saw %d headers, whole scan %d", len(seen), len(wantSeen))
		}
		for i := range seen {
			if seen[i] != wantSeen[i] {
				t.Fatalf("header %d: chunked scan saw %x, whole scan %x", i, seen[i], wantSeen[i])
			}
		}
		if *chunked != *whole {
			t.Fatalf("chunked scan ends at %+v, whole scan at %+v", *chunked, *whole)
		}

		refHeaders, partial, body := fuzzFrames(data)
		if len(refHeaders) != len(seen) {
			t.Fatalf("scan saw %d headers, the stream has %d", len(seen), len(refHeaders))
		}
		for i := range refHeaders {
			if refHeaders[i] != seen[i] {
				t.Fatalf("header %d: scan saw %x, the stream has %x", i, seen[i], refHeaders[i])
			}
		}
		switch {
		case body > 0:
			if whole.body != body || whole.headerLen != yamuxHeaderSize || whole.left() != body {
				t.Fatalf("stream ends %d bytes into a body; cursor at %+v", body, *whole)
			}
		default:
			if whole.body != 0 || whole.headerLen != partial || whole.left() != yamuxHeaderSize-partial {
				t.Fatalf("stream ends %d bytes into a header; cursor at %+v", partial, *whole)
			}
		}
	})
}

// fuzzConnMaxInput bounds FuzzConnWrite's stream, to keep each run quick.
const fuzzConnMaxInput = 64 << 10

// FuzzConnWrite writes a byte stream, yamux-shaped or not, to a Conn in
// chunks of every size, and checks that its peer reads exactly that
// stream: the frame tracking of Conn.Write never loses, reorders or
// duplicates a byte.
func FuzzConnWrite(f *testing.F) {
	f.Fuzz(func(t *testing.T, sizes, data []byte) {
		if len(data) > fuzzConnMaxInput {
			t.Skip("input over 64 KiB")
		}
		cws, sws := wsPair(t)
		writer, reader := NewConn(cws, ClientSide), NewConn(sws, ServerSide)
		_, partial, body := fuzzFrames(data)
		want := data
		if body > 0 {
			// The stream ends in a data frame's body. A data frame's
			// header waits, by design, for the first byte of its body,
			// so that the two go out as one message: send one.
			want = append(bytes.Clone(data), 0xb0)
		}

		// Write while the peer reads: a stream of small chunks may
		// fill the pending buffer, and Write then waits for the socket.
		wrote := make(chan error, 1)
		go func() {
			wrote <- func() error {
				for _, chunk := range fuzzChunks(sizes, data) {
					n, err := writer.Write(chunk)
					if err != nil || n != len(chunk) {
						return fmt.Errorf("Write of %d bytes: %d, %v", len(chunk), n, err)
					}
				}
				// Conn follows the frames as the reference reading does.
				writer.writeMu.Lock()
				out := writer.out
				writer.writeMu.Unlock()
				if out.body != body || body == 0 && out.headerLen != partial {
					return fmt.Errorf("the stream ends with %d header and %d body bytes to come; Conn.Write's cursor is at %+v",
						yamuxHeaderSize-partial, body, out)
				}
				if len(want) > len(data) {
					if _, err := writer.Write(want[len(data):]); err != nil {
						return err
					}
				}
				return nil
			}()
		}()

		reader.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(want))
		if n, err := io.ReadFull(reader, got); err != nil {
			t.Fatalf("read %d of %d bytes: %v; the next bytes due are %x", n, len(want), err, want[n:min(n+32, len(want))])
		}
		if !bytes.Equal(got, want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			t.Fatalf("byte %d of %d differs:\ngot  %x\nwant %x", i, len(want), got[i:min(i+32, len(got))], want[i:min(i+32, len(want))])
		}

		if err := <-wrote; err != nil {
			t.Fatal(err)
		}

		// Nothing more: Close sends what is queued, then the reader sees
		// the end of the stream.
		writer.Close()
		var extra [64]byte
		if n, err := reader.Read(extra[:]); n > 0 || err == nil {
			t.Fatalf("after the stream, read %d more bytes (%x), %v", n, extra[:n], err)
		}
	})
}
