package main

import (
	"strings"
	"testing"
)

func TestNewConnectionRunFailsWhenTheUpstreamSawFewerConnectionsThanRequests(t *testing.T) {
	for _, tt := range []struct {
		name            string
		requests, conns float64
		fails           string
	}{
		{"one each", 1000, 1000, ""},
		{"and wrk's unanswered ones", 1000, 1042, ""},
		{"kept alive", 1000, 50, "connections were reused"},
		{"one reused", 1000, 999, "connections were reused"},
		{"none answered", 0, 50, "no request"},
	} {
		err := oneConnEach(httpLoad{requests: tt.requests, upstreamConns: tt.conns})
		if tt.fails == "" && err != nil || tt.fails != "" && (err == nil || !strings.Contains(err.Error(), tt.fails)) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.fails)
		}
	}
}
