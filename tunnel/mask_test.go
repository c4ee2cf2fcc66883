package tunnel

import (
	"bytes"
	"testing"
)

// maskCopy matches RFC 6455's masking, byte by byte, at every length and
// alignment around its 32- and 8-byte steps.
func TestMaskCopyIsRFC6455Masking(t *testing.T) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	src := make([]byte, 300)
	for i := range src {
		src[i] = byte(i*7 + 3)
	}
	for off := 0; off < 8; off++ {
		for n := 0; n+off <= len(src); n++ {
			in := src[off : off+n]
			want := make([]byte, n)
			for i := range in {
				want[i] = in[i] ^ key[i%4]
			}
			got := make([]byte, n+5)
			maskCopy(got, in, key)
			if !bytes.Equal(got[:n], want) || !bytes.Equal(got[n:], make([]byte, 5)) {
				t.Fatalf("offset %d, length %d: got %x, want %x", off, n, got, want)
			}
		}
	}
}

func BenchmarkMaskCopy(b *testing.B) {
	src, dst := make([]byte, 32<<10), make([]byte, 32<<10)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		maskCopy(dst, src, [4]byte{1, 2, 3, 4})
	}
}
