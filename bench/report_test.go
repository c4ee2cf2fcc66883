package main

import (
	"strings"
	"testing"
	"time"
)

const newConnsTarget = "TCP tunnel ≥ 0.45 × direct requests/s, small requests each on a new connection (hey -disable-keepalive)"

func loads(rps ...float64) []httpLoad {
	var ls []httpLoad
	for _, x := range rps {
		ls = append(ls, httpLoad{rps: x, p50: 1e-3, p99: 2e-3, requests: x * 10, upstreamConns: x*10 + 50,
			cpu: map[string]time.Duration{roleLoad: time.Second}})
	}
	return ls
}

func TestNewConnectionsTargetIsCheckedAgainstTheMediansOfDirect(t *testing.T) {
	for _, tt := range []struct {
		tunnel float64
		row    string
	}{
		{4600, "| " + newConnsTarget + " | 0.46 (4600 vs 10000 req/s); with wrk 0.30 | **met** |"},
		{4400, "| " + newConnsTarget + " | 0.44 (4400 vs 10000 req/s); with wrk 0.30 | **not met** |"},
	} {
		r := newResults()
		r.params = quickParams
		r.small[subjectDirect] = loads(20000)
		r.small[subjectTCPTunnel] = loads(8000)
		r.smallNewConns[subjectDirect] = loads(20000)
		r.smallNewConns[subjectTCPTunnel] = loads(6000)
		r.smallHeyNewConns[subjectDirect] = loads(9000, 10000, 11000)
		r.smallHeyNewConns[subjectTCPTunnel] = loads(tt.tunnel, 1, 1e6)
		md := r.markdown()
		if !strings.Contains(md, tt.row) {
			t.Errorf("no row %q in:\n%s", tt.row, md)
		}
		if !strings.Contains(md, "### Each request on a new connection") || !strings.Contains(md, "Ratio with hey: TCP tunnel / direct requests/s **") || !strings.Contains(md, "Ratio with wrk: TCP tunnel / direct requests/s **0.30**") {
			t.Errorf("no section for new connections in:\n%s", md)
		}
		if strings.Contains(md, "%!") {
			t.Errorf("a formatting error in:\n%s", md)
		}
	}
}

func TestReportWithoutNewConnectionsHasNoRowForThem(t *testing.T) {
	withoutScenario1 := newResults()
	withoutScenario1.reconnect = []reconnectResult{{service: 200 * time.Millisecond, caddyUp: 100 * time.Millisecond}}
	// Scenario 1 failed in its first round on new connections: its other
	// figures were not kept either.
	failed := newResults()
	failed.failures = []string{"small: direct, wrk on new connections: the upstream accepted 50 connections for 1000 requests: connections were reused"}
	for name, r := range map[string]*results{"without scenario 1": withoutScenario1, "scenario 1 failed": failed} {
		r.params = quickParams
		md := r.markdown()
		if strings.Contains(md, "### Each request on a new connection") || strings.Contains(md, newConnsTarget) {
			t.Errorf("%s: a mention of new connections in:\n%s", name, md)
		}
		if strings.Contains(md, "%!") {
			t.Errorf("%s: a formatting error in:\n%s", name, md)
		}
	}
}
