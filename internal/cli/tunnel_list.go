package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/status"
)

func runTunnelList(r tunnelRun, args []string) int {
	fs, address := r.flags()
	asJSON := fs.Bool("json", false, "print the tunnels and their clients as JSON")
	setUsage(fs, "[--json] [flags]",
		"Prints the tunnels of the running Caddy, as a table (or JSON): their hosts, TCP\nports, limits and tokens (never a token itself), then the clients connected, with\nthe tunnel each belongs to.",
		"  %[1]s\n  %[1]s --address localhost:2020 --json")
	if _, code, ok := r.parse(fs, args, 0); !ok {
		return code
	}
	api, ctx, cancel, err := r.admin(*address)
	if err != nil {
		return r.fail(2, err)
	}
	defer cancel()
	var cfg serverConfig
	if err := api.get(ctx, "/config/", &cfg); err != nil {
		return r.fail(1, err)
	}
	st, err := api.status(ctx)
	known := err == nil
	if !known {
		// The tunnels are the config; the clients are extra.
		fmt.Fprintf(r.stderr, "%s: the connected clients are not shown: %v\n", r.name, err)
	}
	list := listTunnels(cfg.Apps.Inlets.Tunnels, st, known, now())
	if *asJSON {
		return r.writeJSON(list)
	}
	if err := writeTunnelTable(r.stdout, list, known, now(), r.group); err != nil {
		return r.fail(1, err)
	}
	return 0
}

// tunnelList is what list prints.
type tunnelList struct {
	Tunnels []listedTunnel `json:"tunnels"`
	// OtherClients are connected with a handler's own token, in no
	// tunnel; null, as each tunnel's clients, when the status could not
	// be read.
	OtherClients []status.Client `json:"other_clients"`
}

// listedTunnel is one tunnel of the list.
type listedTunnel struct {
	Name                string          `json:"name"`
	Hosts               []string        `json:"hosts"`
	TCPPorts            []int           `json:"tcp_ports"`
	UDPPorts            []int           `json:"udp_ports,omitempty"`
	MaxClients          int             `json:"max_clients,omitempty"`
	MaxStreamsPerClient int             `json:"max_streams_per_client,omitempty"`
	OnDemandWildcards   bool            `json:"on_demand_wildcards,omitempty"`
	OnDemandPerHour     int             `json:"on_demand_per_hour,omitempty"`
	Tokens              []listedToken   `json:"tokens"`
	Clients             []status.Client `json:"clients"`
}

// listedToken is a token as list shows it: never its value.
type listedToken struct {
	// Form is how the config holds it: "sha256", "value" or "file".
	Form    string     `json:"form"`
	SHA256  string     `json:"sha256,omitempty"`
	File    string     `json:"file,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Expired bool       `json:"expired,omitempty"`
}

// listTunnels joins the config's tunnels, by name, with the status's
// clients (known is false when the status could not be read).
func listTunnels(tunnels map[string]*config.Tunnel, st status.Status, known bool, now time.Time) tunnelList {
	var list tunnelList
	names := make([]string, 0, len(tunnels))
	for name := range tunnels {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		tun := tunnels[name]
		if tun == nil {
			tun = new(config.Tunnel)
		}
		lt := listedTunnel{
			Name: name, Hosts: tun.Hosts, TCPPorts: slices.Sorted(slices.Values(tun.TCPPorts)), UDPPorts: slices.Sorted(slices.Values(tun.UDPPorts)),
			MaxClients: tun.MaxClients, MaxStreamsPerClient: tun.MaxStreamsPerClient, OnDemandWildcards: tun.OnDemandWildcards,
			OnDemandPerHour: tun.OnDemandPerHour,
			Tokens:          []listedToken{},
		}
		if lt.Hosts == nil {
			lt.Hosts = []string{}
		}
		if lt.TCPPorts == nil {
			lt.TCPPorts = []int{}
		}
		for _, tok := range tun.Tokens {
			l := listedToken{Form: "value", Expires: tok.Expires, Expired: tok.Expires != nil && !now.Before(*tok.Expires)}
			switch {
			case tok.SHA256 != "":
				l.Form, l.SHA256 = "sha256", tok.SHA256
			case tok.File != "":
				l.Form, l.File = "file", tok.File
			}
			lt.Tokens = append(lt.Tokens, l)
		}
		if known {
			lt.Clients = []status.Client{}
		}
		list.Tunnels = append(list.Tunnels, lt)
	}
	if !known {
		return list
	}
	list.OtherClients = []status.Client{}
	for _, c := range st.Clients {
		i := slices.IndexFunc(list.Tunnels, func(t listedTunnel) bool { return t.Name == c.Tunnel })
		if c.Tunnel == "" || i < 0 {
			list.OtherClients = append(list.OtherClients, c)
			continue
		}
		list.Tunnels[i].Clients = append(list.Tunnels[i].Clients, c)
	}
	return list
}

// writeTunnelTable prints the list as two tables, the tunnels and the
// connected clients (group is the tunnel commands', for a hint):
//
//	Tunnel  Hosts                 TCP Ports  Max Clients  Max Streams  Tokens                      Clients
//	acme    *.acme.example.com    2201-2203  4            -            2 (1 expires in 54 minutes)  1
//
//	Connected clients:
//	Tunnel  Client ID  Remote Address   Connected  Upstreams
//	acme    shop-1     10.0.0.7:50122   3 hours    shop.acme.example.com=http://127.0.0.1:3000
func writeTunnelTable(w io.Writer, list tunnelList, known bool, now time.Time, group string) error {
	if len(list.Tunnels) == 0 {
		fmt.Fprintf(w, "No tunnels: create one with '%s create NAME --host PATTERN'.\n", group)
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "Tunnel\tHosts\tTCP Ports\tMax Clients\tMax Streams\tTokens\tClients")
		for _, t := range list.Tunnels {
			clients := "?"
			if known {
				clients = strconv.Itoa(len(t.Clients))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, orDash(strings.Join(t.Hosts, ", ")),
				orDash(strings.Join(append(portRanges(t.TCPPorts), udpRanges(t.UDPPorts)...), ", ")), limit(t.MaxClients), limit(t.MaxStreamsPerClient),
				tokenSummary(t.Tokens, now), clients)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !known {
		return nil
	}
	type row struct {
		tunnel string
		c      status.Client
	}
	var rows []row
	for _, t := range list.Tunnels {
		for _, c := range t.Clients {
			rows = append(rows, row{t.Name, c})
		}
	}
	for _, c := range list.OtherClients {
		rows = append(rows, row{"-", c})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "\nConnected clients: none")
		return err
	}
	fmt.Fprintln(w, "\nConnected clients:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Tunnel\tClient ID\tRemote Address\tConnected\tUpstreams")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.tunnel, r.c.ClientID, r.c.RemoteAddr, status.Ago(r.c.Since, now), strings.Join(r.c.Upstreams, ", "))
	}
	return tw.Flush()
}

// tokenSummary is a tunnel's token count, with those that expire: "1",
// "2 (1 expiring in 54 minutes)", "3 (2 expiring, the first in 5 minutes,
// 1 expired)".
func tokenSummary(tokens []listedToken, now time.Time) string {
	var expiring, expired int
	var next time.Time
	for _, tok := range tokens {
		switch {
		case tok.Expired:
			expired++
		case tok.Expires != nil:
			expiring++
			if next.IsZero() || tok.Expires.Before(next) {
				next = *tok.Expires
			}
		}
	}
	var notes []string
	switch in := humanize.RelTime(now, next, "", ""); {
	case expiring == 1:
		notes = append(notes, "1 expiring in "+in)
	case expiring > 1:
		notes = append(notes, fmt.Sprintf("%d expiring, the first in %s", expiring, in))
	}
	if expired > 0 {
		notes = append(notes, fmt.Sprintf("%d expired", expired))
	}
	if len(notes) == 0 {
		return strconv.Itoa(len(tokens))
	}
	return fmt.Sprintf("%d (%s)", len(tokens), strings.Join(notes, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// limit writes a limit of a tunnel, "-" for the default.
func limit(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}
