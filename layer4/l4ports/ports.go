package l4ports

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// portRange is an inclusive range of ports.
type portRange struct{ first, last int }

// portSet is the allow-list of the ports clients may open, in the order
// the config lists them.
type portSet []portRange

// parsePortRange parses "2222" or "8000-8100" with Caddy's own port-range
// syntax, as in listen addresses.
func parsePortRange(spec string) (portRange, error) {
	na, err := caddy.ParseNetworkAddress(":" + spec)
	if err != nil || strings.ContainsAny(spec, ":/[]") || na.StartPort == 0 {
		if err == nil {
			err = fmt.Errorf("ports are 1 to 65535")
		}
		return portRange{}, fmt.Errorf("ports: %q is not a port or a range like 8000-8100: %v", spec, err)
	}
	return portRange{first: int(na.StartPort), last: int(na.EndPort)}, nil
}

// parsePorts parses the ports of the config.
func parsePorts(specs []string) (portSet, error) {
	set := make(portSet, 0, len(specs))
	for _, spec := range specs {
		r, err := parsePortRange(spec)
		if err != nil {
			return nil, err
		}
		set = append(set, r)
	}
	return set, nil
}

func (ps portSet) contains(port int) bool {
	for _, r := range ps {
		if r.first <= port && port <= r.last {
			return true
		}
	}
	return false
}

// String lists the set as the config does: "2222 8000-8100".
func (ps portSet) String() string {
	parts := make([]string, len(ps))
	for i, r := range ps {
		parts[i] = strconv.Itoa(r.first)
		if r.last != r.first {
			parts[i] += "-" + strconv.Itoa(r.last)
		}
	}
	return strings.Join(parts, " ")
}

// portsPhrase is the subject of a sentence about ports: "port 22 is" or
// "ports 22, 23 are".
func portsPhrase(ports []int) string {
	if len(ports) == 1 {
		return "port " + strconv.Itoa(ports[0]) + " is"
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = strconv.Itoa(p)
	}
	return "ports " + strings.Join(parts, ", ") + " are"
}
