package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/status"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// The tunnel commands edit the tunnels of a running Caddy (the inlets
// app's `tunnels`, registry.Tunnel) through its admin API, as `curl` would:
// HTTP and JSON only, so that the standalone client, which shares this
// package, links no Caddy. Each change is one request, and so one graceful
// reload, which disconnects the clients the new tunnels no longer admit.

// tunnelCommands are the subcommands of `tunnel`, as its usage lists them.
var tunnelCommands = []struct {
	name, summary string
}{
	{"create", "add a tunnel with a new token, and print its client's command"},
	{"list", "show the tunnels, their tokens and their connected clients"},
	{"rotate", "give a tunnel a new token; its old tokens expire after a grace period"},
	{"delete", "remove a tunnel, disconnecting its clients"},
	{"connect", "print the client command of a tunnel, reading its token from a file"},
}

// tunnelUsage is the help of `tunnel` itself.
func tunnelUsage(w io.Writer, name string) {
	fmt.Fprintf(w, "Usage: %s <command> NAME [flags]\n\nManages the tunnels of a running Caddy server through its admin API: each\ntunnel has its own tokens and serves only its own hosts and TCP ports. Every\nchange is a graceful reload, saved in Caddy's autosave for `caddy run --resume`.\n\nCommands:\n", name)
	for _, c := range tunnelCommands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for the command's flags and examples.\n", name)
}

// runTunnel runs `tunnel <command>`; name is how it is invoked
// ("caddy inlets tunnel").
func runTunnel(name string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		tunnelUsage(stderr, name)
		return 2
	}
	run := map[string]func(tunnelRun, []string) int{
		"create":  runTunnelCreate,
		"list":    runTunnelList,
		"rotate":  runTunnelRotate,
		"delete":  runTunnelDelete,
		"connect": runTunnelConnect,
	}[args[0]]
	switch {
	case run != nil:
		return run(tunnelRun{name: name + " " + args[0], group: name, stdout: stdout, stderr: stderr}, args[1:])
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		tunnelUsage(stdout, name)
		return 0
	}
	names := make([]string, len(tunnelCommands))
	for i, c := range tunnelCommands {
		names[i] = c.name
	}
	fmt.Fprintf(stderr, "%s: unknown command %q; the commands are: %s (run '%s --help')\n", name, args[0], strings.Join(names, ", "), name)
	return 2
}

// tunnelRun is one run of a tunnel command.
type tunnelRun struct {
	// name is the command as invoked, "caddy inlets tunnel create"; group
	// is the tunnel commands', for the commands that messages suggest.
	name, group    string
	stdout, stderr io.Writer
}

// fail prints err as the command's one line on stderr and returns code.
func (r tunnelRun) fail(code int, err error) int {
	fmt.Fprintf(r.stderr, "%s: %v\n", r.name, err)
	return code
}

// adminTimeout bounds each command's requests to the admin API, a reload
// among them.
const adminTimeout = time.Minute

// flags is the command's flag set, with --address.
func (r tunnelRun) flags() (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(r.name, flag.ContinueOnError)
	fs.SetOutput(r.stderr)
	address := fs.String("address", defaultAdminAddress(), "the `ADDRESS` of Caddy's admin API, as its `admin` global option gives it: host:port, a URL or unix/PATH (default: $CADDY_ADMIN, or "+caddyAdminDefault+")")
	return fs, address
}

// caddyAdminDefault is the address of Caddy's admin API when neither its
// config nor $CADDY_ADMIN says otherwise.
const caddyAdminDefault = "localhost:2019"

// defaultAdminAddress is where Caddy listens for its admin API by default:
// as Caddy does, $CADDY_ADMIN overrides localhost:2019.
func defaultAdminAddress() string {
	if env, ok := os.LookupEnv("CADDY_ADMIN"); ok && env != "" {
		return env
	}
	return caddyAdminDefault
}

// parse parses the command's args: its flags, and as many NAMEs (before,
// between or after the flags) as it takes, 0 or 1. When the command must
// not go on, it returns false and the exit status, as parseFlags does.
func (r tunnelRun) parse(fs *flag.FlagSet, args []string, names int) (name string, code int, ok bool) {
	flagArgs, positional := splitPositional(fs, args)
	if code, ok := parseFlags(fs, flagArgs, r.stdout, r.stderr); !ok {
		return "", code, false
	}
	switch {
	case len(positional) > names:
		extra := positional[names]
		if names == 0 {
			fmt.Fprintf(r.stderr, "%s: unexpected argument %q: it takes no tunnel name (run '%s --help')\n", r.name, extra, r.name)
		} else {
			fmt.Fprintf(r.stderr, "%s: unexpected argument %q after the tunnel's name %q: every other value follows its flag, e.g. --host VALUE (run '%s --help')\n", r.name, extra, positional[0], r.name)
		}
		return "", 2, false
	case len(positional) < names:
		fmt.Fprintf(r.stderr, "%s: the tunnel's NAME is missing, e.g. '%s acme' (run '%s --help')\n", r.name, r.name, r.name)
		return "", 2, false
	case names == 1:
		if err := config.ValidateTunnelName(positional[0]); err != nil {
			fmt.Fprintf(r.stderr, "%s: %v\n", r.name, err)
			return "", 2, false
		}
		return positional[0], 0, true
	}
	return "", 0, true
}

// splitPositional separates args into flags, with their values, and the
// other arguments, so that NAME may come anywhere; the flag package alone
// stops at the first argument that is not a flag. A flag it does not know
// is left for the flag package to report.
func splitPositional(fs *flag.FlagSet, args []string) (flags, positional []string) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return flags, append(positional, args[i+1:]...)
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			positional = append(positional, arg)
			continue
		}
		flags = append(flags, arg)
		name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		f := fs.Lookup(name)
		if hasValue || f == nil || i+1 == len(args) {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		i++
		flags = append(flags, args[i])
	}
	return flags, positional
}

// admin returns the admin API at address, and a context bounding the
// command's requests.
func (r tunnelRun) admin(address string) (*adminAPI, context.Context, context.CancelFunc, error) {
	api, err := newAdminAPI(address)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	return api, ctx, cancel, nil
}

// tunnelsPath is the admin API's path of the inlets app's tunnels.
const tunnelsPath = "/config/apps/inlets/tunnels/"

// serverConfig is what the commands read of Caddy's whole config.
type serverConfig struct {
	Admin struct {
		Config struct {
			Persist *bool `json:"persist"`
		} `json:"config"`
	} `json:"admin"`
	Apps struct {
		Inlets struct {
			Tunnels map[string]*config.Tunnel `json:"tunnels"`
			TCP     json.RawMessage           `json:"tcp"`
		} `json:"inlets"`
		// InletsTCP is the TCP data plane given as an app of its own.
		InletsTCP json.RawMessage `json:"inlets_tcp"`
	} `json:"apps"`
}

// hasTCP reports whether the config has a TCP data plane, in either form.
func (c *serverConfig) hasTCP() bool {
	given := func(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }
	return given(c.Apps.Inlets.TCP) || given(c.Apps.InletsTCP)
}

// newToken returns a random token, and the hex SHA-256 that the config
// keeps of it. It is 32 random bytes in unpadded base64url: no shell
// quoting needed, and, at 43 characters, never mistaken for a hex digest.
// One that starts with '-' is drawn again, as it would read as a flag.
func newToken() (token, digest string) {
	var b [32]byte
	for token == "" || token[0] == '-' {
		rand.Read(b[:]) // never fails: it crashes the program instead
		token = base64.RawURLEncoding.EncodeToString(b[:])
	}
	return token, tokenDigest(token)
}

func tokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// create

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

func (r tunnelRun) writeJSON(v any) int {
	body, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		_, err = r.stdout.Write(append(body, '\n'))
	}
	if err != nil {
		return r.fail(1, err)
	}
	return 0
}

// placeholderURL stands for the server's URL in client commands when
// --url is not given.
const placeholderURL = "wss://SERVER"

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

// list

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

// rotate

func runTunnelRotate(r tunnelRun, args []string) int {
	fs, address := r.flags()
	grace := fs.Duration("grace", time.Hour, "how long the old tokens are still accepted, as a `DURATION` (30m, 24h); 0 drops them, and disconnects their clients, at once")
	serverURL := fs.String("url", "", "the server's control plane `URL` as clients connect to it, for the client command it prints")
	asJSON := fs.Bool("json", false, "print the new token and the client commands as JSON")
	setUsage(fs, "NAME [--grace DURATION] [flags]",
		"Gives tunnel NAME a new random token, printed this once, and keeps its old tokens\nfor a grace period: until then, clients connect with either, so they can be moved\nto the new one; then the old tokens are refused and their clients disconnected.\nTokens already expired are dropped.",
		"  %[1]s acme\n  %[1]s acme --grace 24h --url wss://tunnel.example.com\n  %[1]s acme --grace 0    # a leaked token: refuse it now")
	name, code, ok := r.parse(fs, args, 1)
	if !ok {
		return code
	}
	if *grace < 0 {
		return r.fail(2, fmt.Errorf("--grace %s: want a duration of 0 or more", *grace))
	}
	if err := checkClientURL(*serverURL); err != nil {
		return r.fail(2, err)
	}
	api, ctx, cancel, err := r.admin(*address)
	if err != nil {
		return r.fail(2, err)
	}
	defer cancel()

	raw, etag, err := api.tunnel(ctx, name)
	if err != nil {
		return r.fail(1, r.tunnelError(ctx, api, name, err))
	}
	// The tokens are rewritten as they came, each with its unknown fields
	// (an "@id" the operator gave it), but for its expiry.
	var tun config.Tunnel
	var tokens struct {
		Tokens []map[string]json.RawMessage `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &tun); err != nil {
		return r.fail(1, fmt.Errorf("reading tunnel %s from Caddy's config: %w", name, err))
	}
	if err := json.Unmarshal(raw, &tokens); err != nil {
		return r.fail(1, fmt.Errorf("reading tunnel %s's tokens from Caddy's config: %w", name, err))
	}
	token, digest := newToken()
	rotated, expire, err := rotateTokens(tokens.Tokens, digest, now(), *grace)
	if err != nil {
		return r.fail(1, fmt.Errorf("tunnel %s: %w", name, err))
	}
	// If-Match makes Caddy refuse the change if the tunnel changed since
	// it was read, where another rotate's token would otherwise be lost.
	header := http.Header{}
	if etag != "" {
		header.Set("If-Match", etag)
	}
	if _, _, err := api.call(ctx, http.MethodPatch, tunnelsPath+name+"/tokens", rotated, header); err != nil {
		var aerr *adminError
		if errors.As(err, &aerr) && aerr.status == http.StatusPreconditionFailed {
			return r.fail(1, fmt.Errorf("tunnel %s changed while its token was rotated (another change through the admin API): run '%s rotate %s' again", name, r.group, name))
		}
		return r.fail(1, r.tunnelError(ctx, api, name, err))
	}
	out := issued{Name: name, Token: token, SHA256: digest, Hosts: tun.Hosts, TCPPorts: slices.Sorted(slices.Values(tun.TCPPorts)),
		UDPPorts: slices.Sorted(slices.Values(tun.UDPPorts)), OldTokensExpire: expire}
	out.Commands = clientCommands(*serverURL, tokenFileArgs(name), tunnelScope{hosts: out.Hosts, tcp: out.TCPPorts, udp: out.UDPPorts})
	if *asJSON {
		return r.writeJSON(out)
	}
	if expire != nil {
		fmt.Fprintf(r.stdout, "Rotated the token of tunnel %s: its old tokens are accepted until %s (in %s); then they are refused, and the clients that connected with them disconnected.\n\n",
			name, expire.Format(time.RFC3339), humanize.RelTime(now(), *expire, "", ""))
	} else {
		fmt.Fprintf(r.stdout, "Rotated the token of tunnel %s: its old tokens are dropped, and their clients disconnected.\n\n", name)
	}
	r.printIssued(out, *serverURL)
	return 0
}

// rotateTokens returns a tunnel's tokens after a rotation at now: the
// old ones that have not expired, each expiring after grace at the latest
// (rounded up to the second), and the new token's digest. It also returns
// when the last old token expires, nil when none is left.
func rotateTokens(old []map[string]json.RawMessage, digest string, now time.Time, grace time.Duration) ([]map[string]json.RawMessage, *time.Time, error) {
	deadline := now.Add(grace)
	if t := deadline.Truncate(time.Second); t.Before(deadline) {
		deadline = t.Add(time.Second)
	}
	deadline = deadline.UTC()
	var out []map[string]json.RawMessage
	var last *time.Time
	for i, tok := range old {
		if grace == 0 {
			break // every old token goes
		}
		exp := deadline
		if raw, ok := tok["expires"]; ok && string(raw) != "null" {
			var own time.Time
			if err := json.Unmarshal(raw, &own); err != nil {
				return nil, nil, fmt.Errorf("token %d: expires %s: %w", i+1, raw, err)
			}
			if !now.Before(own) {
				continue // expired: its clients are gone already
			}
			// A token set to expire sooner is not given longer.
			exp = minTime(own, deadline)
		}
		rewritten := maps.Clone(tok)
		rewritten["expires"], _ = json.Marshal(exp)
		out = append(out, rewritten)
		if last == nil || exp.After(*last) {
			last = &exp
		}
	}
	fresh, _ := json.Marshal(digest)
	return append(out, map[string]json.RawMessage{"sha256": fresh}), last, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// delete

func runTunnelDelete(r tunnelRun, args []string) int {
	fs, address := r.flags()
	setUsage(fs, "NAME [flags]",
		"Removes tunnel NAME from the running Caddy: its tokens are refused from then on,\nand its connected clients are disconnected by the reload.",
		"  %[1]s acme")
	name, code, ok := r.parse(fs, args, 1)
	if !ok {
		return code
	}
	api, ctx, cancel, err := r.admin(*address)
	if err != nil {
		return r.fail(2, err)
	}
	defer cancel()
	connected := -1
	if st, err := api.status(ctx); err == nil {
		connected = 0
		for _, c := range st.Clients {
			if c.Tunnel == name {
				connected++
			}
		}
	}
	if _, _, err := api.call(ctx, http.MethodDelete, tunnelsPath+name, nil, nil); err != nil {
		return r.fail(1, r.tunnelError(ctx, api, name, err))
	}
	switch connected {
	case -1:
		fmt.Fprintf(r.stdout, "Deleted tunnel %s; Caddy disconnected its clients.\n", name)
	case 0:
		fmt.Fprintf(r.stdout, "Deleted tunnel %s; it had no client connected.\n", name)
	case 1:
		fmt.Fprintf(r.stdout, "Deleted tunnel %s; Caddy disconnected its client.\n", name)
	default:
		fmt.Fprintf(r.stdout, "Deleted tunnel %s; Caddy disconnected its %d clients.\n", name, connected)
	}
	return 0
}

// connect

func runTunnelConnect(r tunnelRun, args []string) int {
	fs, address := r.flags()
	serverURL := fs.String("url", "", "the server's control plane `URL` as clients connect to it, wss://HOST or ws://HOST:PORT")
	tokenFile := fs.String("token-file", "", "the `FILE` the client reads the token from (default ./NAME.token)")
	setUsage(fs, "NAME [--url URL] [--token-file FILE] [flags]",
		"Prints the commands that run tunnel NAME's clients, for its hosts and TCP ports,\nwith the token read from a file: Caddy keeps no token, only its SHA-256, so put\nthere the one that create or rotate printed.",
		"  %[1]s acme --url wss://tunnel.example.com --token-file /etc/inlets/acme.token")
	name, code, ok := r.parse(fs, args, 1)
	if !ok {
		return code
	}
	if err := checkClientURL(*serverURL); err != nil {
		return r.fail(2, err)
	}
	if *tokenFile == "" {
		*tokenFile = "./" + name + ".token"
	}
	api, ctx, cancel, err := r.admin(*address)
	if err != nil {
		return r.fail(2, err)
	}
	defer cancel()
	raw, _, err := api.tunnel(ctx, name)
	if err != nil {
		return r.fail(1, r.tunnelError(ctx, api, name, err))
	}
	var tun config.Tunnel
	if err := json.Unmarshal(raw, &tun); err != nil {
		return r.fail(1, fmt.Errorf("reading tunnel %s from Caddy's config: %w", name, err))
	}
	r.printCommands(tunnelScope{hosts: tun.Hosts, tcp: slices.Sorted(slices.Values(tun.TCPPorts)), udp: slices.Sorted(slices.Values(tun.UDPPorts))}, *serverURL, []string{"--token-file", *tokenFile})
	fmt.Fprintf(r.stdout, "%s holds the token that '%s create' or '%s rotate' printed; if it is lost, '%s rotate %s' makes a new one.\n",
		*tokenFile, r.group, r.group, r.group, name)
	return 0
}

// tunnelError words an admin API error about tunnel name: a tunnel the
// config does not have is said so, with the tunnels it has.
func (r tunnelRun) tunnelError(ctx context.Context, api *adminAPI, name string, err error) error {
	var aerr *adminError
	if errors.Is(err, errNoTunnel) || errors.As(err, &aerr) && aerr.message != "" && (aerr.status == http.StatusNotFound || aerr.status == http.StatusBadRequest) {
		// 404 is a tunnel missing from the tunnels; 400 is a path that
		// cannot be followed, when the config has no inlets app at all.
		var cfg serverConfig
		if gerr := api.get(ctx, "/config/", &cfg); gerr == nil && cfg.Apps.Inlets.Tunnels[name] == nil {
			names := make([]string, 0, len(cfg.Apps.Inlets.Tunnels))
			for n := range cfg.Apps.Inlets.Tunnels {
				names = append(names, n)
			}
			if len(names) == 0 {
				return fmt.Errorf("no tunnel %s: Caddy at %s has no tunnels (create one with '%s create %s --host PATTERN')", name, api.address, r.group, name)
			}
			slices.Sort(names)
			return fmt.Errorf("no tunnel %s: Caddy at %s has %s (see '%s list')", name, api.address, strings.Join(names, ", "), r.group)
		}
	}
	return refused(err)
}

// refused words an error of a change: the admin API's own message when
// Caddy refused it, with the config it then keeps.
func refused(err error) error {
	var aerr *adminError
	if errors.As(err, &aerr) && aerr.method != http.MethodGet && aerr.message != "" {
		return fmt.Errorf("Caddy refused the change and keeps its running config: %s", aerr.message)
	}
	return err
}

// The admin API.

// adminAPI is Caddy's admin API, spoken as `caddy reload --address` does.
type adminAPI struct {
	address string // as given, for messages
	base    string // the URL of its root, "http://localhost:2019"
	origin  string // the Origin header Caddy's own commands send; empty on a socket
	client  *http.Client
}

// newAdminAPI takes the address of the admin API: host:port (":2019" is
// localhost's), an http:// or https:// URL, or unix/PATH, a Unix socket,
// as Caddy's `admin` option writes them.
func newAdminAPI(address string) (*adminAPI, error) {
	bad := fmt.Errorf("--address %q: want host:port (%s), a URL (http://localhost:2019) or unix/PATH, as Caddy's `admin` option gives it", address, caddyAdminDefault)
	api := &adminAPI{address: address}
	tr := &http.Transport{Proxy: nil} // the admin API is local, never behind a proxy
	switch {
	case strings.HasPrefix(address, "unix/"):
		// Caddy's socket address may end in permission bits, |0220.
		path, _, _ := strings.Cut(strings.TrimPrefix(address, "unix/"), "|")
		if path == "" {
			return nil, bad
		}
		api.base = "http://127.0.0.1" // any host: the socket is dialed
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	case strings.Contains(address, "://"):
		u, err := url.Parse(address)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return nil, bad
		}
		api.base = u.Scheme + "://" + u.Host
		api.origin = api.base
	default:
		host, port, err := net.SplitHostPort(address)
		if err != nil || port == "" {
			return nil, bad
		}
		if host == "" {
			host = "localhost"
		}
		api.base = "http://" + net.JoinHostPort(host, port)
		api.origin = api.base
	}
	api.client = &http.Client{
		Transport: tr,
		// A redirect is never the admin API's answer to a change, and
		// following it would turn the change into a GET.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return api, nil
}

// adminError is an answer of the admin API other than 2xx.
type adminError struct {
	address, method, path string
	status                int
	// message is the API's own, its "error"; empty when the answer was
	// not the admin API's.
	message string
}

func (e *adminError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("%s is not Caddy's admin API: it answered %s %s with HTTP %d (is --address the address of Caddy's `admin` option?)", e.address, e.method, e.path, e.status)
	}
	return fmt.Sprintf("Caddy's admin API answered %s %s with HTTP %d: %s", e.method, e.path, e.status, e.message)
}

// errNoTunnel is the answer for a tunnel the config does not have.
var errNoTunnel = errors.New("no such tunnel")

// maxAdminAnswer bounds what is read of an answer: a whole config fits.
const maxAdminAnswer = 64 << 20

// call sends method to path, with in as JSON unless nil, and returns the
// answer's body and headers. An answer other than 2xx is an *adminError.
func (a *adminAPI) call(ctx context.Context, method, path string, in any, header http.Header) ([]byte, http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(req.Header, header)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.origin != "" {
		req.Header.Set("Origin", a.origin)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the method and URL
		}
		return nil, nil, fmt.Errorf("cannot reach Caddy's admin API at %s (%v): is Caddy running with its admin API on %s? pass --address as its `admin` option gives it", a.address, err, a.address)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer of Caddy's admin API at %s: %w", a.address, err)
	}
	if resp.StatusCode/100 == 2 {
		return answer, resp.Header, nil
	}
	var apiErr struct {
		Error string `json:"error"`
	}
	json.Unmarshal(answer, &apiErr) // an answer that is not the API's leaves it empty
	return nil, nil, &adminError{address: a.address, method: method, path: path, status: resp.StatusCode, message: apiErr.Error}
}

// get reads the JSON at path into out.
func (a *adminAPI) get(ctx context.Context, path string, out any) error {
	body, _, err := a.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s is not Caddy's admin API: its answer to GET %s is not its config (%v)", a.address, path, err)
	}
	return nil
}

// tunnel returns the config of tunnel name, and the ETag that makes a
// change of it conditional on its being unchanged.
func (a *adminAPI) tunnel(ctx context.Context, name string) (json.RawMessage, string, error) {
	body, header, err := a.call(ctx, http.MethodGet, tunnelsPath+name, nil, nil)
	if err != nil {
		return nil, "", err
	}
	if body = bytes.TrimSpace(body); string(body) == "null" {
		return nil, "", errNoTunnel
	}
	return body, header.Get("Etag"), nil
}

// status reads the clients of the inlets admin route.
func (a *adminAPI) status(ctx context.Context) (status.Status, error) {
	var st status.Status
	body, _, err := a.call(ctx, http.MethodGet, "/inlets/status", nil, nil)
	var aerr *adminError
	if errors.As(err, &aerr) && aerr.status == http.StatusNotFound {
		return st, fmt.Errorf("Caddy at %s has no /inlets/status: is it built with caddy-inlets?", a.address)
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("the answer of %s to GET /inlets/status is not the inlets status: %v", a.address, err)
	}
	return st, nil
}
