package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxDatagramSize is the largest datagram a UDP stream carries: the
// largest a 2-byte length can frame, above any UDP payload over IPv4
// (65,507 bytes).
const MaxDatagramSize = 1<<16 - 1

// ErrDatagramTooLarge is what WriteDatagram returns for a datagram that
// does not fit a frame; nothing is written.
var ErrDatagramTooLarge = errors.New("datagram larger than a UDP stream frame (65535 bytes)")

// WriteDatagram writes one datagram on a UDP stream: its length, 2 bytes
// big-endian, then its bytes, in one Write so that concurrent writers of
// whole datagrams cannot interleave.
func WriteDatagram(w io.Writer, p []byte) error {
	if len(p) > MaxDatagramSize {
		return ErrDatagramTooLarge
	}
	buf := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(buf, uint16(len(p)))
	copy(buf[2:], p)
	_, err := w.Write(buf)
	return err
}

// ReadDatagram reads one datagram of a UDP stream into buf, which must
// hold MaxDatagramSize bytes, and returns its length. At the end of the
// stream between datagrams it returns io.EOF; in the middle of one,
// io.ErrUnexpectedEOF.
func ReadDatagram(r io.Reader, buf []byte) (int, error) {
	if len(buf) < MaxDatagramSize {
		return 0, fmt.Errorf("ReadDatagram needs a buffer of %d bytes, got %d", MaxDatagramSize, len(buf))
	}
	var size [2]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return n, nil
}
