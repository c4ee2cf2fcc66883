package l4ports

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// portSet is the allow-list of the ports clients may open, in the order
// the config lists them.
type portSet []tunnel.PortRange

// parsePorts parses the ports of the config.
func parsePorts(specs []string) (portSet, error) {
	set := make(portSet, 0, len(specs))
	for _, spec := range specs {
		r, err := tunnel.ParsePortRange(spec, 0)
		if err != nil {
			return nil, fmt.Errorf("ports: %w", err)
		}
		set = append(set, r)
	}
	return set, nil
}

func (ps portSet) contains(port int) bool {
	for _, r := range ps {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// String lists the set as the config does: "2222 8000-8100".
func (ps portSet) String() string {
	parts := make([]string, len(ps))
	for i, r := range ps {
		parts[i] = r.String()
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
