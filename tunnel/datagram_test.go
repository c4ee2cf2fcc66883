package tunnel

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestDatagramsKeepTheirBoundaries(t *testing.T) {
	var w bytes.Buffer
	sent := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte{7}, MaxDatagramSize)}
	for _, p := range sent {
		if err := WriteDatagram(&w, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteDatagram(&w, make([]byte, MaxDatagramSize+1)); !errors.Is(err, ErrDatagramTooLarge) {
		t.Fatalf("WriteDatagram of %d bytes: %v, want ErrDatagramTooLarge", MaxDatagramSize+1, err)
	}
	buf := make([]byte, MaxDatagramSize)
	for i, want := range sent {
		n, err := ReadDatagram(&w, buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d: %d bytes, %v; want %d bytes", i, n, err, len(want))
		}
	}
	if _, err := ReadDatagram(&w, buf); err != io.EOF {
		t.Fatalf("after the last datagram: %v, want io.EOF", err)
	}
	if _, err := ReadDatagram(bytes.NewReader([]byte{0, 5, 'a'}), buf); err != io.ErrUnexpectedEOF {
		t.Fatalf("a datagram cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := ReadDatagram(&w, make([]byte, 10)); err == nil {
		t.Fatal("ReadDatagram accepted a buffer too small for a datagram")
	}
}
