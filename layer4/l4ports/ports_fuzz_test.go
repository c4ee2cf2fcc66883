package l4ports

import (
	"strings"
	"testing"
)

// FuzzParsePorts parses the arguments of a `ports` directive, the fuzzed
// string split on spaces. parsePorts must never panic; a set it accepts
// has one range per argument, holds ports 1 to 65535 only, and reads the
// same when its String() is parsed again.
func FuzzParsePorts(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		specs := strings.Split(s, " ")
		set, err := parsePorts(specs)
		if err != nil {
			if set != nil {
				t.Fatalf("parsePorts(%q) returned both %v and an error", specs, set)
			}
			return
		}
		if len(set) != len(specs) {
			t.Fatalf("parsePorts(%q) gave %d ranges", specs, len(set))
		}
		for _, r := range set {
			if r.First < 1 || r.Last > 65535 || r.First > r.Last {
				t.Fatalf("parsePorts(%q) accepted the range %d-%d", specs, r.First, r.Last)
			}
			if !set.contains(r.First) || !set.contains(r.Last) {
				t.Fatalf("the set of %q does not contain its own range %d-%d", specs, r.First, r.Last)
			}
		}
		for _, port := range []int{-1, 0, 65536, 1 << 20} {
			if set.contains(port) {
				t.Fatalf("the set of %q contains port %d", specs, port)
			}
		}
		again, err := parsePorts(strings.Split(set.String(), " "))
		if err != nil {
			t.Fatalf("the set of %q reads %q, which does not parse: %v", specs, set.String(), err)
		}
		if len(again) != len(set) {
			t.Fatalf("the set of %q reads %q, which parses to %v", specs, set.String(), again)
		}
		for i := range set {
			if again[i] != set[i] {
				t.Fatalf("the set of %q reads %q, which parses to %v", specs, set.String(), again)
			}
		}
	})
}
