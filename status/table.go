package status

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
)

// WriteTable prints s as `inlets status` does, with durations measured up
// to now:
//
//	Server info:
//	Hostname: creative-pine6
//	Started:  1 day
//	Mode:     http
//	Version:  0.8.9-rc1
//	Connected clients:
//	Client ID                        Remote Address     Connected Upstreams
//	4e35edf5c6a646b79cc580984eac4ea9 192.168.0.19:34988 5 minutes example.com=http://localhost:8000, prometheus.example.com=http://localhost:9090
func WriteTable(w io.Writer, s Status, now time.Time) error {
	info := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(info, "Server info:")
	fmt.Fprintf(info, "Hostname:\t%s\n", s.Info.Hostname)
	fmt.Fprintf(info, "Started:\t%s\n", Ago(s.Info.StartTime, now))
	fmt.Fprintf(info, "Mode:\t%s\n", s.Info.Mode)
	fmt.Fprintf(info, "Version:\t%s\n", s.Info.Version)
	if err := info.Flush(); err != nil {
		return err
	}
	if len(s.Clients) == 0 {
		_, err := fmt.Fprintln(w, "Connected clients: none")
		return err
	}
	fmt.Fprintln(w, "Connected clients:")
	rows := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	// The Tunnel column appears when some client belongs to a named
	// tunnel: a server with one token prints inlets' own table.
	tunnels := slices.ContainsFunc(s.Clients, func(c Client) bool { return c.Tunnel != "" })
	// So does the RTT column when the server measured round trips (an
	// inlets-pro server, or an older caddy-inlets, does not).
	rtts := slices.ContainsFunc(s.Clients, func(c Client) bool { return c.RTTMillis > 0 })
	if tunnels {
		fmt.Fprint(rows, "Tunnel\t")
	}
	fmt.Fprint(rows, "Client ID\tRemote Address\tConnected\t")
	if rtts {
		fmt.Fprint(rows, "RTT\t")
	}
	fmt.Fprintln(rows, "Upstreams")
	for _, c := range s.Clients {
		if tunnels {
			name := c.Tunnel
			if name == "" {
				name = "-"
			}
			fmt.Fprintf(rows, "%s\t", name)
		}
		fmt.Fprintf(rows, "%s\t%s\t%s\t", c.ClientID, c.RemoteAddr, Ago(c.Since, now))
		if rtts {
			fmt.Fprintf(rows, "%s\t", RTT(c.RTTMillis))
		}
		ups := strings.Join(tableUpstreams(c), ", ")
		if c.Retired {
			ups += " (retired: its open connections end, nothing new)"
		}
		fmt.Fprintln(rows, ups)
	}
	return rows.Flush()
}

// tableUpstreams is a client's upstreams as the table shows them: as
// announced, but a TCP or UDP upstream whose public port is not its own
// is led by the public port, "2222=127.0.0.1:22" (inlets-pro's servers
// forward a port to the same port, and their rows read as before).
func tableUpstreams(c Client) []string {
	out := make([]string, 0, len(c.Upstreams))
	tcp, udp := 0, 0
	for _, up := range c.Upstreams {
		var public []int
		var i *int
		switch {
		case strings.Contains(up, "="):
		case strings.HasPrefix(up, "udp://"):
			public, i = c.UDPPorts, &udp
		default:
			public, i = c.Ports, &tcp
		}
		if i != nil {
			if *i < len(public) {
				if _, port, err := net.SplitHostPort(strings.TrimPrefix(up, "udp://")); err == nil && port != strconv.Itoa(public[*i]) {
					up = strconv.Itoa(public[*i]) + "=" + up
				}
			}
			*i++
		}
		out = append(out, up)
	}
	return out
}

// RTT is a round-trip time in milliseconds as the table shows it: "0.3ms",
// "52ms", "1.25s"; "-" before the first measurement.
func RTT(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// Ago is how long before now t was, in words: "now", "49 minutes",
// "1 day", "3 weeks".
func Ago(t, now time.Time) string {
	return humanize.RelTime(t, now, "", "")
}

// ServerStatus is one server's answer to a status request of several.
type ServerStatus struct {
	URL    string  `json:"url"`
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// WriteFleetTable prints the status of several servers of a fleet: each
// server's table under its URL, then which server misses which client (a
// client ID connected to some of the servers that answered, but not to
// all).
func WriteFleetTable(w io.Writer, servers []ServerStatus, now time.Time) error {
	for i, s := range servers {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if s.Status == nil {
			fmt.Fprintf(w, "== %s: no answer: %s\n", s.URL, s.Error)
			continue
		}
		fmt.Fprintf(w, "== %s (instance %s)\n", s.URL, s.Status.Info.InstanceID)
		if err := WriteTable(w, *s.Status, now); err != nil {
			return err
		}
	}
	var ids []string
	on := map[string]map[string]bool{}
	answered := 0
	for _, s := range servers {
		if s.Status == nil {
			continue
		}
		answered++
		for _, c := range s.Status.Clients {
			if on[c.ClientID] == nil {
				on[c.ClientID] = map[string]bool{}
				ids = append(ids, c.ClientID)
			}
			on[c.ClientID][s.URL] = true
		}
	}
	slices.Sort(ids)
	var missing []string
	for _, id := range ids {
		var not []string
		for _, s := range servers {
			if s.Status != nil && !on[id][s.URL] {
				not = append(not, s.URL)
			}
		}
		if len(not) > 0 {
			missing = append(missing, fmt.Sprintf("%s is not connected to %s", id, strings.Join(not, ", ")))
		}
	}
	fmt.Fprintln(w)
	switch {
	case answered < len(servers):
		fmt.Fprintf(w, "%d of %d servers answered.\n", answered, len(servers))
	case len(ids) == 0:
		fmt.Fprintf(w, "No client is connected to any of the %d servers.\n", len(servers))
	case len(missing) == 0:
		fmt.Fprintf(w, "Every client (%d) is connected to all %d servers.\n", len(ids), len(servers))
	}
	for _, m := range missing {
		fmt.Fprintln(w, "Missing: "+m)
	}
	return nil
}
