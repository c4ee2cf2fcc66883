package cli

import (
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
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/caddy-inlets/caddy-inlets/config"
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
	{"visitors", "set or show who may visit a tunnel, and how often"},
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
		"create":   runTunnelCreate,
		"list":     runTunnelList,
		"rotate":   runTunnelRotate,
		"delete":   runTunnelDelete,
		"visitors": runTunnelVisitors,
		"connect":  runTunnelConnect,
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

// errNoTunnel is the answer for a tunnel the config does not have.
var errNoTunnel = errors.New("no such tunnel")

// maxAdminAnswer bounds what is read of an answer: a whole config fits.
const maxAdminAnswer = 64 << 20
