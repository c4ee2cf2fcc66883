package config

import (
	"math"
	"testing"
)

// FuzzVisitors reads arbitrary strings as a visitors policy's prefixes and
// rates: what is accepted is a masked prefix (an IPv4 one for an
// IPv4-mapped address) and a positive, finite rate.
func FuzzVisitors(f *testing.F) {
	f.Fuzz(func(t *testing.T, prefix, rate string) {
		if p, err := ParseVisitorPrefix(prefix); err == nil {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("%q parsed to %v", prefix, p)
			}
			v := Visitors{Allow: []string{prefix}, Deny: []string{prefix}}
			if err := v.Validate(); err != nil {
				t.Fatalf("%q parses but does not validate: %v", prefix, err)
			}
		}
		if r, err := ParseRate(rate); err == nil {
			if r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
				t.Fatalf("%q parsed to %v", rate, r)
			}
			if b := Burst(r, 0); b < 1 {
				t.Fatalf("burst of %v is %d", r, b)
			}
		}
	})
}
