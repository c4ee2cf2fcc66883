// Package cli is the command line of the inlets client, shared by the
// standalone `inlets` binary and `caddy inlets`: the HTTP and TCP clients,
// `client`, which runs the tunnels of a config file and follows its
// changes, `status`, which prints a server's status, and `tunnel`, which
// manages a server's tunnels through Caddy's admin API.
package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/version"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
	"github.com/dustin/go-humanize"
)

// commands are the commands, as their usage lists them.
var commands = []struct {
	name, summary string
}{
	{"client", "run the tunnels of a config file, HTTP and TCP together, reloading it when it changes"},
	{"http client", "expose HTTP services of this network, routed by host name, through a caddy-inlets server"},
	{"tcp client", "expose TCP ports of this network through a caddy-inlets server"},
	{"status", "show a caddy-inlets server's clients"},
	{"version", "print the version"},
	{"tunnel", "create, list, rotate and delete the tunnels of a Caddy server, through its admin API"},
}

// usage is the program's own help.
func usage(w io.Writer, name string) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\n%s is the tunnel client of caddy-inlets: it connects to the Caddy server's\ncontrol plane and serves its visitors from this network. On the server, its\ntunnel commands manage the tunnels, through Caddy's admin API.\n\nCommands:\n", name, name)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for the command's flags and examples; '%s --version' prints the version.\n", name, name)
}

// commandNames lists the commands, for an error.
func commandNames() string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// Main runs the command line args (without the program name) and returns
// the exit status. name is how the program is invoked ("inlets" or
// "caddy inlets").
func Main(name string, args []string, stdout, stderr io.Writer) int {
	cmd := strings.Join(args[:min(2, len(args))], " ")
	switch {
	case cmd == "http client":
		return runClient(name+" http client", tunnel.ModeHTTP, args[2:], stdout, stderr)
	case cmd == "tcp client":
		return runClient(name+" tcp client", tunnel.ModeTCP, args[2:], stdout, stderr)
	case len(args) == 0:
		usage(stderr, name)
		return 2
	case args[0] == "client":
		return runClientFile(name+" client", args[1:], stdout, stderr)
	case args[0] == "status":
		return runStatus(name+" status", args[1:], stdout, stderr)
	case args[0] == "tunnel":
		return runTunnel(name+" tunnel", args[1:], stdout, stderr)
	case args[0] == "version" || args[0] == "--version" || args[0] == "-version":
		fmt.Fprintf(stdout, "%s %s (%s)\n", name, version.Version(), version.SHA())
		return 0
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		usage(stdout, name)
		return 0
	case args[0] == "http" || args[0] == "tcp":
		fmt.Fprintf(stderr, "%s: unknown command %q: did you mean '%s %s client'? The commands are: %s\n", name, cmd, name, args[0], commandNames())
		return 2
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q; the commands are: %s (run '%s --help')\n", name, args[0], commandNames(), name)
		return 2
	}
}

// clientFlags are the flags both client modes share.
type clientFlags struct {
	serverFlags
	id               string
	upstreamInsecure bool
	maxUnread        int64
	maxStreams       int
	peers            []string
}

func (f *clientFlags) register(fs *flag.FlagSet, mode string) {
	f.serverFlags.register(fs, "ws://HOST:PORT, or wss://HOST for a server with HTTPS; the path defaults to "+tunnel.ConnectPath, mode == tunnel.ModeHTTP)
	fs.StringVar(&f.id, "id", "", "the client's `ID` in the server's status (default: random); replicas of one service may share one")
	fs.Func("peer", "a `HOST` (a name, *.domain or an IP address) that the servers may advertise as a peer of their fleet, besides those under the domain of a --url's host; repeatable (or comma-separated). A peer is dialled with the token only when it passes these rules", func(s string) error {
		f.peers = append(f.peers, splitList(s)...)
		return nil
	})
	fs.IntVar(&f.maxStreams, "max-streams", client.DefaultMaxStreams, "the most `STREAMS` (visitors' connections) each server may have open at once through this client: past it, new ones are reset and the server's visitors get an error; about 12 KiB each")
	fs.Func("max-unread", fmt.Sprintf("the most the client holds of what visitors sent that its upstreams have not taken yet, all servers together, as a `SIZE` such as 32MiB (default %dMiB, at least 1MiB): nearing it, the streams whose upstream stopped reading longest ago are reset", client.DefaultMaxUnread>>20), func(s string) (err error) {
		f.maxUnread, err = parseMaxUnread(s)
		return err
	})
	if mode == tunnel.ModeHTTP {
		fs.BoolVar(&f.upstreamInsecure, "upstream-insecure-skip-verify", false, "do not verify https:// upstreams' certificates (self-signed local services)")
	}
}

// parseMaxUnread parses a --max-unread SIZE, such as 32MiB: 1 MiB to 1 TiB.
func parseMaxUnread(s string) (int64, error) {
	size, err := humanize.ParseBytes(s)
	if err != nil || size < 1<<20 || size > 1<<40 {
		return 0, fmt.Errorf("--max-unread %q: want a size from 1MiB, such as 32MiB", s)
	}
	return int64(size), nil
}

// clientHelp is each client command's help: what it does, its required
// flags, and examples.
var clientHelp = map[string]struct{ synopsis, about, examples string }{
	tunnel.ModeHTTP: {
		synopsis: "--url URL (--token TOKEN | --token-file FILE | --token-env VARIABLE) --upstream [HOST=]URL[,...] [flags]",
		about:    "Exposes HTTP services of this network through a caddy-inlets server: the server's\nvisitors asking for HOST are served by URL. HOST is app.example.com,\n*.example.com or * (a bare URL means *); URL is http:// or https://, with an\noptional path prefix, or h2c:// or h2:// for an HTTP/2 upstream (gRPC). The client reconnects until it is stopped (Ctrl-C, SIGTERM).",
		examples: "  %[1]s --url wss://tunnel.example.com --token-file ./token \\\n      --upstream app.example.com=http://127.0.0.1:3000\n  %[1]s --url ws://127.0.0.1:8123 --token s3cret \\\n      --upstream grafana.example.com=http://10.0.0.5:3000,http://127.0.0.1:8080",
	},
	tunnel.ModeTCP: {
		synopsis: "--url URL (--token TOKEN | --token-file FILE | --token-env VARIABLE) --upstream HOST (--ports | --udp-ports) PORT[:LOCAL][,...] [flags]",
		about:    "Exposes TCP and UDP ports of this network through a caddy-inlets server: a\nvisitor's connection to the server's PORT is relayed to HOST:LOCAL (LOCAL\ndefaults to PORT), and so are a visitor's datagrams to a UDP PORT. The server\nmust allow the ports (its inlets { tcp { ports ... udp_ports ... } }). The\nclient reconnects until it is stopped (Ctrl-C, SIGTERM).",
		examples: "  %[1]s --url wss://tunnel.example.com --token-file ./token \\\n      --upstream 127.0.0.1 --ports 2222:22\n  %[1]s --url ws://127.0.0.1:8123 --token s3cret --upstream 192.168.0.10 --ports 8000-8010\n  %[1]s --url wss://tunnel.example.com --token-file ./token \\\n      --upstream 192.168.0.10 --udp-ports 53,51820",
	},
}

// setUsage gives fs a conventional help: a usage line, what the command
// does, its flags (the required ones first, and marked), and examples.
func setUsage(fs *flag.FlagSet, synopsis, about, examples string, required ...string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s %s\n\n%s\n\n", fs.Name(), synopsis, about)
		show := func(f *flag.Flag) {
			arg, help := flag.UnquoteUsage(f)
			if arg != "" {
				arg = " " + arg
			}
			fmt.Fprintf(w, "  --%s%s\n      %s\n", f.Name, arg, help)
		}
		if len(required) > 0 {
			fmt.Fprintln(w, "Required flags:")
			for _, name := range required {
				show(fs.Lookup(name))
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "Flags:")
		fs.VisitAll(func(f *flag.Flag) {
			// A flag without help is one a command takes only to refuse
			// it with the fix (see refuseFlags).
			if !slices.Contains(required, f.Name) && f.Usage != "" {
				show(f)
			}
		})
		fmt.Fprintln(w)
		if examples != "" {
			fmt.Fprintf(w, "Examples:\n"+examples+"\n", fs.Name())
		}
	}
}

func runClient(name, mode string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var common clientFlags
	common.register(fs, mode)
	var tunnels tunnelFlags
	tunnels.register(fs, mode)
	required := []string{"url", "token", "upstream"}
	configFile := fs.String("config", "", "") // refused below, with the command that takes it
	help := clientHelp[mode]
	setUsage(fs, help.synopsis, help.about, help.examples, required...)
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if *configFile != "" {
		fmt.Fprintf(stderr, "%s: --config: a config file runs with '%s client --config %s', which runs its HTTP and TCP tunnels together; this command takes flags only\n", name, strings.TrimSuffix(name, " "+mode+" client"), *configFile)
		return 2
	}
	cfg, err := common.config()
	if err == nil {
		if mode == tunnel.ModeHTTP {
			cfg.HTTP, err = parseHTTPUpstreams(tunnels.upstreams)
		} else {
			cfg.TCP, cfg.UDP, err = parseTCPUpstreams(tunnels.upstreams, tunnels.ports, tunnels.udpPorts)
			if err == nil || len(tunnels.ports)+len(tunnels.udpPorts) == 0 && len(tunnels.sniNames) > 0 {
				cfg.SNI, err = parseSNI(tunnels.upstreams, tunnels.sniNames, err)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	limitMemory(cfg.MaxUnread)
	c, err := client.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	cfg.Logger.Info("stopped")
	return 0
}

// tunnelFlags are a client command's tunnels: --upstream, and for a tcp
// client --ports (or --port), --udp-ports and --sni; each repeatable and
// comma-separated.
type tunnelFlags struct {
	upstreams, ports, udpPorts, sniNames []string
}

func (f *tunnelFlags) register(fs *flag.FlagSet, mode string) {
	add := func(to *[]string) func(string) error {
		return func(s string) error {
			*to = append(*to, splitList(s)...)
			return nil
		}
	}
	fs.Func("upstream", upstreamHelp(mode), add(&f.upstreams))
	if mode == tunnel.ModeTCP {
		fs.Func("ports", "the `PORTS` to serve, comma-separated: PORT, PORT:LOCALPORT or a range FIRST-LAST (e.g. 2222:22,8000-8010)", add(&f.ports))
		fs.Func("port", "a public `PORT` to serve (a repeatable alias of --ports)", add(&f.ports))
		fs.Func("udp-ports", "the UDP `PORTS` to serve, in the syntax of --ports (e.g. 53,51820:51821); with or without --ports", add(&f.udpPorts))
		fs.Func("sni", "TLS server `NAMES` to serve, comma-separated: NAME or NAME=LOCALPORT (default 443), NAME a host or *.domain; the server's caddy-l4 routes pass those TLS connections through, untouched, to HOST:LOCALPORT", add(&f.sniNames))
	}
}

// memoryHeadroom is what the client process may hold besides what
// visitors sent and upstreams have not taken (--max-unread): streams,
// copy buffers, the runtime.
const memoryHeadroom = 64 << 20

// limitMemory asks Go's garbage collector to keep the client's heap
// within maxUnread (0: the default) plus memoryHeadroom, unless the
// operator set GOMEMLIMIT: a soft limit, so that the heap's growth
// between collections does not take an edge device's memory when the
// budget is full. The budget bounds the data; this bounds the rest.
func limitMemory(maxUnread int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(cmp.Or(maxUnread, client.DefaultMaxUnread) + memoryHeadroom)
}

func upstreamHelp(mode string) string {
	if mode == tunnel.ModeTCP {
		return "the `HOST` (a name or an IP address, without a port) the ports are relayed to"
	}
	return "`HOST=URL` to serve, repeatable and comma-separated; a bare URL serves every host (*). HOST may be app.example.com, *.example.com or *"
}

// config turns the shared flags into a client config. The CA of --tls-ca
// is trusted for the server and for https:// upstreams alike.
func (f *clientFlags) config() (client.Config, error) {
	token, roots, err := f.resolve()
	if err != nil {
		return client.Config{}, err
	}
	return f.build(token, roots), nil
}

// build is the client config of the flags, their token read and their CA
// loaded: the one place that turns the flags into a config, for the
// command line and for a config file (whose keys are the flags).
func (f *clientFlags) build(token string, roots *x509.CertPool) client.Config {
	cfg := client.Config{URL: f.url, URLs: f.urls[1:], ID: f.id, Token: token, TLS: f.tlsConfig(roots), MaxUnread: f.maxUnread, MaxStreams: f.maxStreams, Peers: f.peers}
	if roots != nil || f.upstreamInsecure {
		cfg.UpstreamTLS = &tls.Config{RootCAs: roots, InsecureSkipVerify: f.upstreamInsecure}
	}
	return cfg
}

// parseHTTPUpstreams parses HOST=URL items; a bare URL is the catch-all.
func parseHTTPUpstreams(items []string) ([]tunnel.HTTPUpstream, error) {
	if len(items) == 0 {
		return nil, errors.New("--upstream is required, e.g. --upstream app.example.com=http://127.0.0.1:3000")
	}
	var out []tunnel.HTTPUpstream
	for _, item := range items {
		host, url, found := strings.Cut(item, "=")
		if !found {
			host, url = "*", item
		}
		up, err := parseHTTPUpstream(host, url)
		if err != nil {
			return nil, fmt.Errorf("--upstream %s: %w", item, err)
		}
		out = append(out, up)
	}
	return out, nil
}

// parseHTTPUpstream checks one host and its upstream URL, as an --upstream
// HOST=URL item and a config file's http entry give them: the URL first,
// then the host, lower-cased.
func parseHTTPUpstream(host, url string) (tunnel.HTTPUpstream, error) {
	host = strings.ToLower(strings.TrimSpace(host))
	if _, err := tunnel.ParseUpstreamURL(url); err != nil {
		return tunnel.HTTPUpstream{}, err
	}
	if err := tunnel.ValidateHostPattern(host); err != nil {
		return tunnel.HTTPUpstream{}, err
	}
	return tunnel.HTTPUpstream{Host: host, URL: url}, nil
}

// parseTCPUpstreams parses --upstream HOST with --ports and --udp-ports,
// each PORT[:LOCAL] or FIRST-LAST; at least one port of either.
func parseTCPUpstreams(hosts, ports, udpPorts []string) ([]tunnel.TCPUpstream, []tunnel.UDPUpstream, error) {
	if len(hosts) != 1 {
		return nil, nil, errors.New("give one --upstream HOST, the host the ports are relayed to (e.g. --upstream 127.0.0.1)")
	}
	host := hosts[0]
	if err := checkTCPHost(host); err != nil {
		return nil, nil, err
	}
	if len(ports)+len(udpPorts) == 0 {
		return nil, nil, errors.New("--ports, --udp-ports or --sni is required, e.g. --ports 2222:22,8000, --udp-ports 53 or --sni '*.k8s.example.com'")
	}
	tcp, err := parsePortMap("--ports", host, ports)
	if err != nil {
		return nil, nil, err
	}
	var udp []tunnel.UDPUpstream
	pairs, err := parsePortMap("--udp-ports", host, udpPorts)
	for _, p := range pairs {
		udp = append(udp, tunnel.UDPUpstream{Port: p.Port, Upstream: p.Upstream})
	}
	return tcp, udp, err
}

// parseSNI parses --sni NAME[=LOCALPORT] items, relayed to the one
// --upstream HOST. portsErr is parseTCPUpstreams' error: its complaint of
// no ports stands only when there are no names either.
func parseSNI(hosts, items []string, portsErr error) ([]tunnel.TLSUpstream, error) {
	if len(items) == 0 {
		return nil, portsErr
	}
	if len(hosts) != 1 {
		return nil, errors.New("give one --upstream HOST, the host the TLS names are relayed to (e.g. --upstream 127.0.0.1)")
	}
	if err := checkTCPHost(hosts[0]); err != nil {
		return nil, err
	}
	var out []tunnel.TLSUpstream
	for _, item := range items {
		name, local, found := strings.Cut(item, "=")
		if !found {
			local = "443"
		}
		name = strings.ToLower(strings.TrimSpace(name))
		port, err := strconv.Atoi(local)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("--sni %s: want NAME or NAME=LOCALPORT, the port between 1 and 65535", item)
		}
		if name == "*" {
			return nil, fmt.Errorf("--sni %s: * would take every TLS connection; give names, or *.domain", item)
		}
		if err := tunnel.ValidateHostPattern(name); err != nil {
			return nil, fmt.Errorf("--sni %s: %w", item, err)
		}
		out = append(out, tunnel.TLSUpstream{Name: name, Upstream: joinHostPort(hosts[0], port)})
	}
	return out, nil
}

// parsePortMap parses the PORT[:LOCAL] and FIRST-LAST items of one flag.
func parsePortMap(flag, host string, ports []string) ([]tunnel.TCPUpstream, error) {
	var out []tunnel.TCPUpstream
	for _, p := range ports {
		if strings.Contains(p, "-") {
			r, err := tunnel.ParsePortRange(p, tunnel.MaxPortRange)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", flag, p, err)
			}
			for _, port := range r.Ports() {
				out = append(out, tunnel.TCPUpstream{Port: port, Upstream: joinHostPort(host, port)})
			}
			continue
		}
		public, local, found := strings.Cut(p, ":")
		if !found {
			local = public
		}
		pub, err1 := strconv.Atoi(public)
		loc, err2 := strconv.Atoi(local)
		if err1 != nil || err2 != nil || pub < 1 || pub > 65535 || loc < 1 || loc > 65535 {
			return nil, fmt.Errorf("%s %s: want PORT, PORT:LOCALPORT or FIRST-LAST, each port between 1 and 65535", flag, p)
		}
		out = append(out, tunnel.TCPUpstream{Port: pub, Upstream: joinHostPort(host, loc)})
	}
	return out, nil
}

// checkTCPHost holds a TCP --upstream to a host name or an IP address:
// the mistakes of a user who gives a URL or a host:port get the fix.
func checkTCPHost(host string) error {
	if scheme, rest, ok := strings.Cut(host, "://"); ok {
		return fmt.Errorf("--upstream %s: give the host alone, without %s:// (TCP is relayed byte for byte): --upstream %s", host, scheme, strings.TrimSuffix(rest, "/"))
	}
	bare := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(bare) != nil {
		return nil
	}
	if h, port, err := net.SplitHostPort(host); err == nil {
		return fmt.Errorf("--upstream %s: give the host without a port; the ports come from --ports PORT:LOCALPORT, e.g. --upstream %s --ports 2222:%s", host, h, port)
	}
	if host == "" || strings.ContainsAny(host, "/:[] @") || strings.ContainsFunc(host, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("--upstream %q: want a host name or an IP address, such as 127.0.0.1 or db.lan", host)
	}
	return nil
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
