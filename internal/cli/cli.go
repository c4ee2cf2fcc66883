// Package cli is the command line of the inlets client, shared by the
// standalone `inlets` binary and `caddy inlets`: the HTTP and TCP clients,
// and `status`, which prints a server's status.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/internal/version"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

const usage = `Usage:
  %[1]s http client --url URL --token TOKEN --upstream [HOST=]URL[,...]
  %[1]s tcp client  --url URL --token TOKEN --upstream HOST --ports PORT[:LOCAL][,...]
  %[1]s status      --url URL --token TOKEN [--json]
  %[1]s version

Run '%[1]s http client -h', '%[1]s tcp client -h' or '%[1]s status -h' for the flags.
`

// Main runs the command line args (without the program name) and returns
// the exit status. name is how the program is invoked ("inlets" or
// "caddy inlets").
func Main(name string, args []string, stdout, stderr io.Writer) int {
	cmd := strings.Join(args[:min(2, len(args))], " ")
	switch {
	case cmd == "http client":
		return runClient(name+" http client", tunnel.ModeHTTP, args[2:], stderr)
	case cmd == "tcp client":
		return runClient(name+" tcp client", tunnel.ModeTCP, args[2:], stderr)
	case len(args) > 0 && args[0] == "status":
		return runStatus(name+" status", args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "version":
		fmt.Fprintf(stdout, "%s %s (%s)\n", name, version.Version(), version.SHA())
		return 0
	case len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		fmt.Fprintf(stdout, usage, name)
		return 0
	default:
		fmt.Fprintf(stderr, usage, name)
		return 2
	}
}

// clientFlags are the flags both client modes share.
type clientFlags struct {
	serverFlags
	id               string
	upstreamInsecure bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	f.serverFlags.register(fs, "server control plane: ws://HOST:PORT or wss://HOST (path defaults to "+tunnel.ConnectPath+")")
	fs.StringVar(&f.id, "id", "", "client ID shown in the server's status (default: random)")
	fs.BoolVar(&f.upstreamInsecure, "upstream-insecure-skip-verify", false, "do not verify https:// upstreams' certificates (self-signed local services)")
}

func runClient(name, mode string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var common clientFlags
	common.register(fs)
	var upstreams, ports []string
	fs.Func("upstream", upstreamHelp(mode), func(s string) error {
		upstreams = append(upstreams, splitList(s)...)
		return nil
	})
	if mode == tunnel.ModeTCP {
		addPorts := func(s string) error {
			ports = append(ports, splitList(s)...)
			return nil
		}
		fs.Func("ports", "public ports to serve, comma-separated: PORT or PORT:LOCALPORT (e.g. 2222:22,8000)", addPorts)
		fs.Func("port", "a public port to serve (repeatable alias of --ports)", addPorts)
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, err := common.config()
	if err == nil {
		if mode == tunnel.ModeHTTP {
			cfg.HTTP, err = parseHTTPUpstreams(upstreams)
		} else {
			cfg.TCP, err = parseTCPUpstreams(upstreams, ports)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
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

func upstreamHelp(mode string) string {
	if mode == tunnel.ModeTCP {
		return "the host (name or IP) the ports are relayed to"
	}
	return "HOST=URL to serve, repeatable and comma-separated; a bare URL serves every host (*). HOST may be app.example.com, *.example.com or *"
}

// config turns the shared flags into a client config. The CA of --tls-ca
// is trusted for the server and for https:// upstreams alike.
func (f *clientFlags) config() (client.Config, error) {
	token, roots, err := f.resolve()
	if err != nil {
		return client.Config{}, err
	}
	cfg := client.Config{URL: f.url, ID: f.id, Token: token, TLS: f.tlsConfig(roots)}
	if roots != nil || f.upstreamInsecure {
		cfg.UpstreamTLS = &tls.Config{RootCAs: roots, InsecureSkipVerify: f.upstreamInsecure}
	}
	return cfg, nil
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
		host = strings.ToLower(strings.TrimSpace(host))
		if _, err := tunnel.ParseUpstreamURL(url); err != nil {
			return nil, fmt.Errorf("--upstream %s: %w", item, err)
		}
		if err := tunnel.ValidateHostPattern(host); err != nil {
			return nil, fmt.Errorf("--upstream %s: %w", item, err)
		}
		out = append(out, tunnel.HTTPUpstream{Host: host, URL: url})
	}
	return out, nil
}

// parseTCPUpstreams parses --upstream HOST with --ports PORT[:LOCAL].
func parseTCPUpstreams(hosts, ports []string) ([]tunnel.TCPUpstream, error) {
	if len(hosts) != 1 {
		return nil, errors.New("give one --upstream HOST, the host the ports are relayed to (e.g. 127.0.0.1)")
	}
	if len(ports) == 0 {
		return nil, errors.New("--ports is required, e.g. --ports 2222:22,8000")
	}
	host := hosts[0]
	var out []tunnel.TCPUpstream
	for _, p := range ports {
		public, local, found := strings.Cut(p, ":")
		if !found {
			local = public
		}
		pub, err1 := strconv.Atoi(public)
		loc, err2 := strconv.Atoi(local)
		if err1 != nil || err2 != nil || pub < 1 || pub > 65535 || loc < 1 || loc > 65535 {
			return nil, fmt.Errorf("--ports %s: want PORT or PORT:LOCALPORT, each between 1 and 65535", p)
		}
		out = append(out, tunnel.TCPUpstream{Port: pub, Upstream: joinHostPort(host, loc)})
	}
	return out, nil
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
