package tunnel

import "encoding/binary"

// yamux frame header layout (yamux spec.md): version (1 byte), type (1),
// flags (2), stream ID (4), length (4), all big-endian.
const (
	yamuxHeaderSize = 12

	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxTypePing         = 2

	yamuxFlagSYN = 1
	yamuxFlagACK = 2
	yamuxFlagFIN = 4
	yamuxFlagRST = 8
)

// yamuxHeader is one frame header.
type yamuxHeader [yamuxHeaderSize]byte

func (h *yamuxHeader) typ() byte        { return h[1] }
func (h *yamuxHeader) flags() uint16    { return binary.BigEndian.Uint16(h[2:4]) }
func (h *yamuxHeader) streamID() uint32 { return binary.BigEndian.Uint32(h[4:8]) }
func (h *yamuxHeader) length() uint32   { return binary.BigEndian.Uint32(h[8:12]) }

// bodyLen is how many bytes follow the header: the length of a data
// frame; the length field of the other types is not a size.
func (h *yamuxHeader) bodyLen() int {
	if h.typ() != yamuxTypeData {
		return 0
	}
	return int(h.length())
}

func newYamuxHeader(typ byte, flags uint16, id, length uint32) yamuxHeader {
	var h yamuxHeader
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

// resetFrame is the frame that resets stream id: a window update with the
// RST flag, as yamux sends it.
func resetFrame(id uint32) yamuxHeader {
	return newYamuxHeader(yamuxTypeWindowUpdate, yamuxFlagRST, id, 0)
}

// pingFrame asks the peer to answer with a ping of the same opaque value.
func pingFrame(value uint32) yamuxHeader {
	return newYamuxHeader(yamuxTypePing, yamuxFlagSYN, 0, value)
}

// frameCursor follows the yamux frames in a byte stream, whatever the
// sizes of the chunks it arrives in: where each header starts and how much
// body is left.
type frameCursor struct {
	header    yamuxHeader
	headerLen int // bytes of header gathered; yamuxHeaderSize once whole
	body      int // body bytes of the current frame still to come
}

// atBoundary reports whether the next byte starts a frame.
func (f *frameCursor) atBoundary() bool { return f.headerLen == 0 && f.body == 0 }

// left is how many bytes remain before the next boundary, as far as the
// cursor knows: the rest of the header, or of the body.
func (f *frameCursor) left() int {
	if f.body > 0 {
		return f.body
	}
	return yamuxHeaderSize - f.headerLen
}

// scan moves the cursor over p and calls onHeader for each header that
// completes in it.
func (f *frameCursor) scan(p []byte, onHeader func(h *yamuxHeader)) {
	for len(p) > 0 {
		if f.body > 0 {
			n := min(f.body, len(p))
			f.body -= n
			p = p[n:]
			if f.body == 0 {
				f.headerLen = 0
			}
			continue
		}
		n := copy(f.header[f.headerLen:], p)
		f.headerLen += n
		p = p[n:]
		if f.headerLen < yamuxHeaderSize {
			return
		}
		if onHeader != nil {
			onHeader(&f.header)
		}
		if f.body = f.header.bodyLen(); f.body == 0 {
			f.headerLen = 0
		}
	}
}
