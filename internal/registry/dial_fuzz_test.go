package registry

import "testing"

// FuzzParseDialAddress checks that ParseDialAddress never panics and
// accepts only what DialAddress makes: an accepted address has an index
// that is not negative, and DialAddress gives it back exactly.
func FuzzParseDialAddress(f *testing.F) {
	f.Fuzz(func(t *testing.T, addr string) {
		session, index, ok := ParseDialAddress(addr)
		if !ok {
			return
		}
		if index < 0 {
			t.Fatalf("ParseDialAddress(%q) = session %d, index %d: negative index", addr, session, index)
		}
		if back := DialAddress(session, index); back != addr {
			t.Fatalf("ParseDialAddress(%q) = session %d, index %d, but DialAddress of those is %q", addr, session, index, back)
		}
	})
}
