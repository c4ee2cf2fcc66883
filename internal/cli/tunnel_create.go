package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func runTunnelCreate(r tunnelRun, args []string) int {
	fs, address := r.flags()
	var hosts []string
	var ports, udpPorts []int
	fs.Func("host", "a host `PATTERN` its clients may serve: app.example.com, *.example.com or *; repeatable (or --tcp-port, --udp-port)", func(s string) error {
		for _, h := range splitList(s) {
			h = strings.ToLower(h)
			if err := tunnel.ValidateHostPattern(h); err != nil {
				return err
			}
			if slices.Contains(hosts, h) {
				return fmt.Errorf("host %s is given twice", h)
			}
			hosts = append(hosts, h)
		}
		return nil
	})
	addPorts := func(list *[]int, what string) func(string) error {
		return func(s string) error {
			for _, spec := range splitList(s) {
				got, err := parsePortSpec(spec)
				if err != nil {
					return err
				}
				for _, p := range got {
					if slices.Contains(*list, p) {
						return fmt.Errorf("%s %d is given twice", what, p)
					}
				}
				*list = append(*list, got...)
			}
			return nil
		}
	}
	fs.Func("tcp-port", "a TCP `PORT` its clients may open, or a range FIRST-LAST; repeatable (or --host). The server needs its TCP data plane, inlets { tcp { ... } }", addPorts(&ports, "port"))
	fs.Func("udp-port", "a UDP `PORT` its clients may open, or a range FIRST-LAST; repeatable. The server needs its TCP data plane, inlets { tcp { ... } }", addPorts(&udpPorts, "UDP port"))
	maxClients := fs.Int("max-clients", 0, "at most `N` of its clients connected at once (default: no limit of its own)")
	maxStreams := fs.Int("max-streams-per-client", 0, "at most `N` data streams open at once through one of its clients (default: the control plane's max_streams_per_client)")
	onDemand := fs.Bool("on-demand-wildcards", false, "let on-demand TLS get certificates for any name under its wildcard hosts, or its clients' names under '*' (off: anyone could make the server ask its CA for names)")
	onDemandPerHour := fs.Int("on-demand-per-hour", 0, "at most `N` certificates ordered by on-demand TLS for its names an hour, 5 in any minute (default 20)")
	visitors := visitorFlags(fs, "visitor-")
	serverURL := fs.String("url", "", "the server's control plane `URL` as clients connect to it, wss://HOST or ws://HOST:PORT, for the client command it prints")
	asJSON := fs.Bool("json", false, "print the token and the client commands as JSON")
	setUsage(fs, "NAME (--host PATTERN | --tcp-port PORT | --udp-port PORT)... [flags]",
		"Adds tunnel NAME to the running Caddy, with a new random token, and prints the\ntoken, this once, and the client command to run with it: Caddy's config keeps only\nthe token's SHA-256. Its clients may serve the hosts of --host, the TCP ports of\n--tcp-port and the UDP ports of --udp-port, and nothing that another tunnel owns. Caddy autosaves the change, for\n`caddy run --resume`; loading a Caddyfile again (`caddy reload`) replaces it.",
		"  %[1]s acme --host '*.acme.example.com' --url wss://tunnel.example.com\n  %[1]s lab --host lab.example.com --tcp-port 2222,8000-8010 --max-clients 2",
		"host", "tcp-port")
	name, code, ok := r.parse(fs, args, 1)
	if !ok {
		return code
	}
	switch {
	case len(hosts) == 0 && len(ports) == 0 && len(udpPorts) == 0:
		return r.fail(2, fmt.Errorf("tunnel %s would serve nothing: give it --host PATTERN, --tcp-port PORT or --udp-port PORT", name))
	case *maxClients < 0 || *maxStreams < 0 || *onDemandPerHour < 0:
		return r.fail(2, errors.New("--max-clients, --max-streams-per-client and --on-demand-per-hour take a positive number"))
	case len(ports) > tunnel.MaxPortRange:
		return r.fail(2, fmt.Errorf("%d TCP ports: a tunnel takes at most %d", len(ports), tunnel.MaxPortRange))
	case len(udpPorts) > tunnel.MaxPortRange:
		return r.fail(2, fmt.Errorf("%d UDP ports: a tunnel takes at most %d", len(udpPorts), tunnel.MaxPortRange))
	}
	if err := checkClientURL(*serverURL); err != nil {
		return r.fail(2, err)
	}
	policy, err := visitors()
	if err != nil {
		return r.fail(2, err)
	}
	api, ctx, cancel, err := r.admin(*address)
	if err != nil {
		return r.fail(2, err)
	}
	defer cancel()

	token, digest := newToken()
	slices.Sort(ports)
	slices.Sort(udpPorts)
	tun := config.Tunnel{
		Tokens:              []config.Token{{SHA256: digest}},
		Hosts:               hosts,
		TCPPorts:            ports,
		UDPPorts:            udpPorts,
		MaxClients:          *maxClients,
		MaxStreamsPerClient: *maxStreams,
		OnDemandWildcards:   *onDemand,
		OnDemandPerHour:     *onDemandPerHour,
		Visitors:            policy,
	}
	// PUT creates the inlets app and its tunnels on the way when the
	// config has none, and refuses a name that exists.
	if _, _, err := api.call(ctx, http.MethodPut, tunnelsPath+name, tun, nil); err != nil {
		var aerr *adminError
		if errors.As(err, &aerr) && aerr.status == http.StatusConflict {
			return r.fail(1, fmt.Errorf("tunnel %s exists: rotate its token with '%s rotate %s', or delete it first with '%s delete %s'", name, r.group, name, r.group, name))
		}
		return r.fail(1, refused(err))
	}
	// What Caddy will not do for the tunnel, though it took it.
	var cfg serverConfig
	if err := api.get(ctx, "/config/", &cfg); err == nil {
		if cfg.Admin.Config.Persist != nil && !*cfg.Admin.Config.Persist {
			fmt.Fprintf(r.stderr, "%s: note: this Caddy does not autosave its config (admin config persist off): the tunnel is lost when it restarts\n", r.name)
		}
		if len(ports)+len(udpPorts) > 0 && !cfg.hasTCP() {
			fmt.Fprintf(r.stderr, "%s: note: this Caddy has no TCP data plane, so it refuses the tunnel's TCP and UDP clients: add a global `inlets { tcp { ... } }` block\n", r.name)
		}
	}
	sc := tunnelScope{hosts: hosts, tcp: ports, udp: udpPorts}
	out := issued{Name: name, Token: token, SHA256: digest, Hosts: hosts, TCPPorts: ports, UDPPorts: udpPorts}
	out.Commands = clientCommands(*serverURL, tokenFileArgs(name), sc)
	if *asJSON {
		return r.writeJSON(out)
	}
	fmt.Fprintf(r.stdout, "Created tunnel %s, serving %s.\n\n", name, scopeOf(sc))
	r.printIssued(out, *serverURL)
	return 0
}

// issued is a new token and how to use it: what create and rotate print.
type issued struct {
	Name     string   `json:"name"`
	Token    string   `json:"token"`
	SHA256   string   `json:"sha256"`
	Hosts    []string `json:"hosts,omitempty"`
	TCPPorts []int    `json:"tcp_ports,omitempty"`
	UDPPorts []int    `json:"udp_ports,omitempty"`
	// OldTokensExpire is when the tokens rotate replaced stop being
	// accepted; absent when none is left.
	OldTokensExpire *time.Time `json:"old_tokens_expire,omitempty"`
	// Commands are the client commands, one line each.
	Commands []string `json:"commands"`
}

// printIssued prints a new token, and the client commands, which read it
// from a file: a token on a command line is in ps's output and in the
// shell's history.
func (r tunnelRun) printIssued(out issued, serverURL string) {
	fmt.Fprintf(r.stdout, "Its token, shown this once (Caddy keeps only its SHA-256; if it is lost, '%s rotate %s' makes a new one):\n\n    %s\n\n", r.group, out.Name, out.Token)
	fmt.Fprintf(r.stdout, "Save it where the client runs, in a file only the client's user can read (chmod 600): %s below.\n\n", tokenFileName(out.Name))
	r.printCommands(tunnelScope{hosts: out.Hosts, tcp: out.TCPPorts, udp: out.UDPPorts}, serverURL, tokenFileArgs(out.Name))
}

// tokenFileName is the file the printed client commands of tunnel name
// read its token from.
func tokenFileName(name string) string { return "./" + name + ".token" }

// tokenFileArgs is the token's flag in a client command of tunnel name.
func tokenFileArgs(name string) []string { return []string{"--token-file", tokenFileName(name)} }

// printCommands prints the commands that run the tunnel's clients, and
// what to replace in them.
func (r tunnelRun) printCommands(sc tunnelScope, serverURL string, secret []string) {
	var replace []string
	if len(sc.hosts) > 0 {
		replace = append(replace, "PORT with the local port of the service behind each host")
	}
	if serverURL == "" {
		replace = append(replace, placeholderURL+" with the server's address (or give it to this command with --url)")
	}
	commands := clientArgs(serverURL, secret, sc)
	if len(commands) == 1 {
		fmt.Fprint(r.stdout, "Run its client on the private network:\n\n")
	} else {
		fmt.Fprint(r.stdout, "Run its clients on the private network:\n\n")
	}
	for _, argv := range commands {
		fmt.Fprintf(r.stdout, "    %s\n", formatCommand(argv, " \\\n        "))
	}
	if len(replace) > 0 {
		fmt.Fprintf(r.stdout, "\nReplace %s.\n", strings.Join(replace, ", and "))
	}
	if len(sc.tcp)+len(sc.udp) > 0 {
		fmt.Fprintln(r.stdout, "Each port is relayed to the same port of --upstream; --ports PORT:LOCALPORT (or --udp-ports) relays it to another.")
	}
}

// checkClientURL checks --url, the server's URL for the client commands:
// empty, or what a client takes.
func checkClientURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("--url %s: give the URL clients connect to, wss://HOST or ws://HOST:PORT (the address of the site with the inlets directive)", raw)
	}
	return nil
}

// parsePortSpec parses a --tcp-port or --udp-port: PORT or FIRST-LAST.
func parsePortSpec(spec string) ([]int, error) {
	r, err := tunnel.ParsePortRange(spec, tunnel.MaxPortRange)
	if err != nil {
		return nil, err
	}
	return r.Ports(), nil
}

// portRanges writes sorted, distinct ports as PORT and FIRST-LAST items.
func portRanges(ports []int) []string {
	var out []string
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if j == i {
			out = append(out, strconv.Itoa(ports[i]))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", ports[i], ports[j]))
		}
		i = j + 1
	}
	return out
}

// tunnelScope is what a tunnel's clients may serve.
type tunnelScope struct {
	hosts    []string
	tcp, udp []int
}

// udpRanges is portRanges for UDP ports, each marked udp/ for the table.
func udpRanges(ports []int) []string {
	out := portRanges(ports)
	for i := range out {
		out[i] = "udp/" + out[i]
	}
	return out
}

// scopeOf says what a tunnel serves, for a sentence.
func scopeOf(sc tunnelScope) string {
	var parts []string
	if len(sc.hosts) > 0 {
		parts = append(parts, "hosts "+strings.Join(sc.hosts, ", "))
	}
	if len(sc.tcp) > 0 {
		parts = append(parts, "TCP ports "+strings.Join(portRanges(sc.tcp), ", "))
	}
	if len(sc.udp) > 0 {
		parts = append(parts, "UDP ports "+strings.Join(portRanges(sc.udp), ", "))
	}
	return strings.Join(parts, " and ")
}

// clientArgs are the command lines that run a tunnel's clients: an HTTP
// client serving its hosts, a TCP client serving its ports. secret is
// the token's flag and value, --token TOKEN or --token-file FILE. The
// client is the standalone inlets binary, as a private network runs it.
func clientArgs(serverURL string, secret []string, sc tunnelScope) [][]string {
	if serverURL == "" {
		serverURL = placeholderURL
	}
	var out [][]string
	if len(sc.hosts) > 0 {
		argv := append([]string{"inlets", "http", "client", "--url", serverURL}, secret...)
		for _, h := range sc.hosts {
			argv = append(argv, "--upstream", h+"=http://127.0.0.1:PORT")
		}
		out = append(out, argv)
	}
	if len(sc.tcp)+len(sc.udp) > 0 {
		argv := append([]string{"inlets", "tcp", "client", "--url", serverURL}, secret...)
		argv = append(argv, "--upstream", "127.0.0.1")
		if len(sc.tcp) > 0 {
			argv = append(argv, "--ports", strings.Join(portRanges(sc.tcp), ","))
		}
		if len(sc.udp) > 0 {
			argv = append(argv, "--udp-ports", strings.Join(portRanges(sc.udp), ","))
		}
		out = append(out, argv)
	}
	return out
}

// clientCommands are clientArgs as shell command lines, one line each.
func clientCommands(serverURL string, secret []string, sc tunnelScope) []string {
	var out []string
	for _, argv := range clientArgs(serverURL, secret, sc) {
		out = append(out, formatCommand(argv, " "))
	}
	return out
}

// formatCommand writes argv for a POSIX shell, with br before each
// --upstream after the first (br " \\\n    " continues the line).
func formatCommand(argv []string, br string) string {
	var b strings.Builder
	upstreams := 0
	for i, arg := range argv {
		if i > 0 {
			if arg == "--upstream" && upstreams > 0 {
				b.WriteString(br)
			} else {
				b.WriteByte(' ')
			}
		}
		if arg == "--upstream" {
			upstreams++
		}
		b.WriteString(shellQuote(arg))
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell unless it is plain: the * of a
// host pattern would otherwise be expanded.
func shellQuote(s string) string {
	plain := s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	})
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
