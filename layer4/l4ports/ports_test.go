package l4ports

import "testing"

func TestPortSetParsesPortsAndRanges(t *testing.T) {
	set, err := parsePorts([]string{"2222", "8000-8100", "65535"})
	if err != nil {
		t.Fatal(err)
	}
	if got := set.String(); got != "2222 8000-8100 65535" {
		t.Errorf("String() = %q", got)
	}
	for port, want := range map[int]bool{
		2222: true, 2221: false, 2223: false,
		8000: true, 8050: true, 8100: true, 7999: false, 8101: false,
		65535: true, 1: false,
	} {
		if got := set.contains(port); got != want {
			t.Errorf("contains(%d) = %v, want %v", port, got, want)
		}
	}
}

func TestPortsPhrase(t *testing.T) {
	if got := portsPhrase([]int{22}); got != "port 22 is" {
		t.Errorf("one port: %q", got)
	}
	if got := portsPhrase([]int{22, 23}); got != "ports 22, 23 are" {
		t.Errorf("two ports: %q", got)
	}
}
