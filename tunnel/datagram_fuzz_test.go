package tunnel

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadDatagram reads arbitrary bytes as the datagrams of a UDP
// stream. ReadDatagram must never panic nor read past a datagram's
// length; each datagram it returns must come back unchanged through
// WriteDatagram and ReadDatagram.
func FuzzReadDatagram(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		buf := make([]byte, MaxDatagramSize)
		again := make([]byte, MaxDatagramSize)
		consumed := 0
		for {
			n, err := ReadDatagram(r, buf)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("ReadDatagram: unexpected error %v", err)
				}
				return
			}
			consumed += 2 + n
			if read := len(data) - r.Len(); read != consumed {
				t.Fatalf("ReadDatagram took %d bytes for datagrams of %d", read, consumed)
			}
			var w bytes.Buffer
			if err := WriteDatagram(&w, buf[:n]); err != nil {
				t.Fatalf("WriteDatagram of %d bytes: %v", n, err)
			}
			m, err := ReadDatagram(&w, again)
			if err != nil || !bytes.Equal(again[:m], buf[:n]) {
				t.Fatalf("a datagram of %d bytes did not survive a round trip (%d bytes, %v)", n, m, err)
			}
		}
	})
}
