package tunnel

import "testing"

func TestAHostPatternMatchesOneLabelAndCoversAnyDepth(t *testing.T) {
	for _, tt := range []struct {
		pattern, host string
		match, covers bool
	}{
		{"app.example.com", "app.example.com", true, true},
		{"app.example.com", "other.example.com", false, false},
		{"*.example.com", "shop.example.com", true, true},
		{"*.example.com", "a.shop.example.com", false, true},
		{"*.example.com", "*.shop.example.com", false, true},
		{"*.example.com", "*.example.com", true, true},
		{"*.example.com", "example.com", false, false},
		{"*.example.com", "shopexample.com", false, false},
		{"*.example.com", "*", false, false},
		{"*", "anything.example.org", true, true},
		{"*", "*", true, true},
	} {
		p := HostPattern(tt.pattern)
		if got := p.Match(tt.host); got != tt.match {
			t.Errorf("%s.Match(%s) = %v, want %v", tt.pattern, tt.host, got, tt.match)
		}
		if got := p.Covers(tt.host); got != tt.covers {
			t.Errorf("%s.Covers(%s) = %v, want %v", tt.pattern, tt.host, got, tt.covers)
		}
	}
}
