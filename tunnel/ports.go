package tunnel

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxPortRange bounds the ports a tunnel lists, and the ports of one
// range a client announces: 1024.
const MaxPortRange = 1024

// PortRange is an inclusive range of TCP or UDP ports, First ≤ Last: the
// one grammar of ports in the server's config ("ports", "udp_ports", a
// tunnel's "tcp_ports"), the client's flags and the CLI's, written
// "PORT" or "FIRST-LAST".
type PortRange struct{ First, Last int }

// ParsePortRange parses "2222" or "8000-8100": ports 1 to 65535, the
// first not above the last, at most max of them (0: any number). Its
// errors say what the spec was and what a spec is.
func ParsePortRange(spec string, max int) (PortRange, error) {
	for _, c := range []byte(spec) {
		if (c < '0' || c > '9') && c != '-' {
			return PortRange{}, fmt.Errorf("%q is not a port (1-65535) or a range FIRST-LAST such as 8000-8100", spec)
		}
	}
	first, last, isRange := strings.Cut(spec, "-")
	lo, err1 := strconv.Atoi(first)
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = strconv.Atoi(last)
	}
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return PortRange{}, fmt.Errorf("%q is not a port (1-65535) or a range FIRST-LAST such as 8000-8100", spec)
	}
	r := PortRange{First: lo, Last: hi}
	if max > 0 && r.Len() > max {
		return PortRange{}, fmt.Errorf("%q is %d ports; a range may hold at most %d", spec, r.Len(), max)
	}
	return r, nil
}

// Len is the number of ports in r.
func (r PortRange) Len() int { return r.Last - r.First + 1 }

// Contains reports whether port is in r.
func (r PortRange) Contains(port int) bool { return r.First <= port && port <= r.Last }

// Ports lists the ports of r, in order.
func (r PortRange) Ports() []int {
	ports := make([]int, 0, r.Len())
	for p := r.First; p <= r.Last; p++ {
		ports = append(ports, p)
	}
	return ports
}

// String writes r as it is parsed: "2222" or "8000-8100".
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(r.First)
	}
	return strconv.Itoa(r.First) + "-" + strconv.Itoa(r.Last)
}
