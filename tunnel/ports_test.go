package tunnel

import (
	"strings"
	"testing"
)

func TestAPortRangeIsAPortOrFirstDashLast(t *testing.T) {
	for spec, want := range map[string]PortRange{"2222": {2222, 2222}, "8000-8100": {8000, 8100}, "1-65535": {1, 65535}, "7-7": {7, 7}} {
		r, err := ParsePortRange(spec, 0)
		if err != nil || r != want {
			t.Errorf("%q: %v, %v; want %v", spec, r, err, want)
		}
		if r.String() != strings.TrimSuffix(spec, "-7") {
			t.Errorf("%q reads %q", spec, r.String())
		}
	}
	for _, spec := range []string{"", "0", "0-10", "65536", "100-90", "http", "22-", "-22", "1.2.3.4:22", ":22", "22/tcp", " 22", "+22", "22-+23", "8000-8100-8200"} {
		_, err := ParsePortRange(spec, 0)
		if err == nil || !strings.Contains(err.Error(), "is not a port (1-65535) or a range FIRST-LAST such as 8000-8100") {
			t.Errorf("%q: %v, want an error saying what a port range is", spec, err)
		}
	}
	if _, err := ParsePortRange("1000-3000", MaxPortRange); err == nil || err.Error() != `"1000-3000" is 2001 ports; a range may hold at most 1024` {
		t.Errorf("a range past the bound: %v", err)
	}
	r, _ := ParsePortRange("8000-8003", MaxPortRange)
	if got := r.Ports(); len(got) != 4 || got[0] != 8000 || got[3] != 8003 || !r.Contains(8002) || r.Contains(8004) {
		t.Errorf("8000-8003: ports %v", got)
	}
}

// FuzzParsePortRange: an error or a range of ports 1 to 65535, first not
// above last, within the bound, that reads back as it parses.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"2222", "8000-8100", "0", "65536", "1-65535", "-", "5-3", "+22", "22-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		r, err := ParsePortRange(spec, MaxPortRange)
		if err != nil {
			return
		}
		if r.First < 1 || r.Last > 65535 || r.First > r.Last || r.Len() > MaxPortRange {
			t.Fatalf("%q: %v", spec, r)
		}
		if again, err := ParsePortRange(r.String(), MaxPortRange); err != nil || again != r {
			t.Fatalf("%q reads %q, which parses to %v, %v", spec, r.String(), again, err)
		}
	})
}
