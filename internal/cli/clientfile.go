package cli

// The config file of `inlets client --config FILE`: the tunnels of many
// `inlets http client` and `inlets tcp client` command lines in one YAML
// file, for one process. Its keys are those commands' flags, so what the
// flags say of a value (its syntax, its messages) holds for the file:
//
//	url:                              # --url: one, or a list (a fleet)
//	  - wss://tunnel-a.example.com
//	  - wss://tunnel-b.example.com
//	token-file: token                 # or token-env: VARIABLE, or token: TOKEN
//	tls-ca: ca.pem                    # relative paths: to the file's directory
//	id: homelab
//	peer: ["*.example.net"]
//	max-streams: 10000
//	max-unread: 64MiB
//	insecure-skip-verify: false
//	upstream-insecure-skip-verify: false
//	drain-timeout: 10m                # the file's own: see client_run.go
//	http:                             # each: --upstream HOST=URL
//	  - host: app.example.com         # default "*", every host
//	    upstream: http://127.0.0.1:3000
//	tcp:                              # each: --upstream HOST with --ports, --udp-ports, --sni
//	  - upstream: 192.168.0.10
//	    ports: 2222:22,8000-8010      # a string, or a list of strings and numbers
//	  - upstream: 192.168.0.11
//	    udp-ports: 51820
//	    sni: db.example.com=5432
//
// The file is read into yaml.Node values rather than structs, so that
// every mistake names the line it is on, FILE:LINE, as a compiler does.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// maxClientFileSize bounds a config file, which the client reads every
// second: a thousand tunnels take about 50 KiB.
const maxClientFileSize = 1 << 20

// defaultDrainTimeout is drain-timeout's default: a replaced client's
// HTTP streams end within the server's keep-alive idle timeout (2m by
// default), since the server sends nothing new on a retired session; its
// TCP connections (an SSH session, a database's) last as long as their
// users keep them, and get ten minutes before they are cut.
const defaultDrainTimeout = 10 * time.Minute

// maxFileErrors is the most mistakes of a file reported at once: the first
// ones, then how many more.
const maxFileErrors = 20

// fileModes are the modes a config file may hold tunnels of, each run by a
// client of its own (a session has one mode), in the order they start and
// are reported, with their name in messages.
var fileModes = []struct{ mode, label string }{
	{tunnel.ModeHTTP, "HTTP"},
	{tunnel.ModeTCP, "layer-4"},
}

// The keys of each level of a file. The top level's are the flags both
// client commands share, and the file's own drain-timeout; an http entry's
// are an --upstream HOST=URL; a tcp entry's are the flags of one `inlets
// tcp client`'s tunnels.
var (
	topKeys = []string{"url", "token", "token-file", "token-env", "tls-ca", "insecure-skip-verify",
		"id", "peer", "max-streams", "max-unread", "upstream-insecure-skip-verify", "drain-timeout", "http", "tcp"}
	httpEntryKeys = []string{"host", "upstream"}
	tcpEntryKeys  = []string{"upstream", "ports", "udp-ports", "sni"}
)

// clientFile is a config file, parsed and checked as running it would be.
type clientFile struct {
	path string
	// configs are the clients to run, by mode (tunnel.ModeHTTP and
	// tunnel.ModeTCP), for the modes the file has tunnels of. Their Logger
	// is unset: the runner gives each its own.
	configs map[string]*client.Config
	// servers is how many server URLs the file gives.
	servers int
	// drainTimeout bounds how long a replaced client's open streams are
	// served before it is stopped.
	drainTimeout time.Duration
	// watched are the files the config reads besides path (token-file,
	// tls-ca): when they change, so does the config.
	watched []string
}

// loadClientFile reads, parses and checks the config file at path.
func loadClientFile(path string) (*clientFile, error) {
	data, err := readClientFile(path)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		return nil, &fileErrors{path: path, errs: []fileError{{msg: err.Error()}}}
	}
	return parseClientFile(path, data)
}

// readClientFile reads a config file, at most maxClientFileSize.
func readClientFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxClientFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxClientFileSize {
		return nil, fmt.Errorf("larger than %d KiB: is it the client's config file?", maxClientFileSize>>10)
	}
	return data, nil
}

// fileError is one mistake of a config file: its line (0: about the whole
// file) and what is wrong, with the fix.
type fileError struct {
	line int
	msg  string
}

// fileErrors are the mistakes of a config file, in the order of their
// lines, the whole file's last. Its Error has a line for each, which
// starts FILE:LINE: (or FILE: for the whole file).
type fileErrors struct {
	path string
	errs []fileError
	// more counts the mistakes past maxFileErrors, not kept.
	more int
}

func (e *fileErrors) Error() string {
	var b strings.Builder
	for i, fe := range e.errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		if fe.line > 0 {
			fmt.Fprintf(&b, "%s:%d: %s", e.path, fe.line, fe.msg)
		} else {
			fmt.Fprintf(&b, "%s: %s", e.path, fe.msg)
		}
	}
	if e.more > 0 {
		fmt.Fprintf(&b, "\n%s: and %d more mistakes", e.path, e.more)
	}
	return b.String()
}

// fileParser walks a config file's nodes and gathers its mistakes.
type fileParser struct {
	errs fileErrors
}

// errorf records a mistake at line (0: the whole file), on one line
// whatever the values it quotes hold.
func (p *fileParser) errorf(line int, format string, args ...any) {
	if len(p.errs.errs) == maxFileErrors {
		p.errs.more++
		return
	}
	p.errs.errs = append(p.errs.errs, fileError{line: line, msg: oneLine(fmt.Sprintf(format, args...))})
}

// err is the mistakes, or nil.
func (p *fileParser) err() error {
	if len(p.errs.errs) == 0 {
		return nil
	}
	// By line, the whole file's (line 0) last.
	key := func(e fileError) int {
		if e.line == 0 {
			return math.MaxInt
		}
		return e.line
	}
	slices.SortStableFunc(p.errs.errs, func(a, b fileError) int { return cmp.Compare(key(a), key(b)) })
	return &p.errs
}

// oneLine keeps a message on one line and within reason, whatever a value
// it quotes holds: control characters and line separators become ?, and
// the message is cut at 400 bytes.
func oneLine(msg string) string {
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return '?'
		}
		return r
	}, msg)
	if len(msg) > 400 {
		cut := 400
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// flagMessage is the message of a parser the flags share, for a file: the
// flag's leading dashes dropped, as the file's key is its name.
func flagMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "--")
}

// at is a value of a file and its line.
type at struct {
	value string
	line  int
}

// parseClientFile parses and checks a config file's content: every value
// as its flag would be, the tunnels across entries, and each mode's config
// through client.New, which checks the rest, so that a file accepted here
// runs. path names the file in messages, and relative paths in it are
// relative to its directory.
func parseClientFile(path string, data []byte) (*clientFile, error) {
	top, err := decodeClientFile(path, data)
	if err != nil {
		return nil, err
	}
	p := &fileParser{errs: fileErrors{path: path}}
	if top == nil {
		p.errorf(0, "no settings: a config file gives url:, a token (token-file:, token-env: or token:) and tunnels (http: or tcp: entries); the command's --help shows one")
		return nil, p.err()
	}
	if top.Kind != yaml.MappingNode {
		// Not kindOf: a file given by mistake (the token file) must not
		// be printed.
		got := map[yaml.Kind]string{yaml.SequenceNode: "a list", yaml.ScalarNode: "a single value"}[top.Kind]
		p.errorf(top.Line, "want settings as keys, such as url: and http:, got %s: is this the client's config file?", cmp.Or(got, "something else"))
		return nil, p.err()
	}
	f := &clientFile{path: path, configs: map[string]*client.Config{}, drainTimeout: defaultDrainTimeout}
	dir := filepath.Dir(path)
	relative := func(name string) string {
		if filepath.IsAbs(name) {
			return name
		}
		return filepath.Join(dir, name)
	}
	var (
		flags                   clientFlags
		urls                    []at
		urlKey, idKey, caKey    *yaml.Node
		httpKey, tcpKey         *yaml.Node
		tokenKeys               []*yaml.Node
		httpUps                 []tunnel.HTTPUpstream
		l4                      layer4Tunnels
		httpEntries, tcpEntries int
	)
	p.fields(top, "at the top level", topKeys, func(k, v *yaml.Node) {
		switch k.Value {
		case "url":
			urlKey = k
			urls = p.list(k.Value, v, "wss://tunnel.example.com")
		case "token", "token-file", "token-env":
			tokenKeys = append(tokenKeys, k)
			example := map[string]string{"token": "the token", "token-file": "/etc/inlets/token", "token-env": "INLETS_TOKEN"}[k.Value]
			s, ok := p.text(k.Value, v, example)
			switch {
			case !ok:
			case k.Value == "token":
				flags.token = s
			case k.Value == "token-env":
				flags.tokenEnv = s
			default:
				flags.tokenFile = relative(s)
				f.watched = append(f.watched, flags.tokenFile)
			}
		case "tls-ca":
			caKey = k
			if s, ok := p.text(k.Value, v, "/etc/inlets/ca.pem"); ok {
				flags.tlsCA = relative(s)
				f.watched = append(f.watched, flags.tlsCA)
			}
		case "insecure-skip-verify":
			flags.insecure = p.boolean(k.Value, v)
		case "upstream-insecure-skip-verify":
			flags.upstreamInsecure = p.boolean(k.Value, v)
		case "id":
			idKey = k
			flags.id, _ = p.text(k.Value, v, "homelab")
		case "peer":
			for _, peer := range p.list(k.Value, v, `"*.example.net"`) {
				flags.peers = append(flags.peers, peer.value)
			}
		case "max-streams":
			if n, ok := p.number(k.Value, v, "10000"); ok {
				if n < 1 {
					p.errorf(v.Line, "max-streams %d: want at least 1; without the line, the default is %d", n, client.DefaultMaxStreams)
				}
				flags.maxStreams = n
			}
		case "max-unread":
			if s, ok := p.text(k.Value, v, "64MiB"); ok {
				var err error
				if flags.maxUnread, err = parseMaxUnread(s); err != nil {
					p.errorf(v.Line, "%s", flagMessage(err))
				}
			}
		case "drain-timeout":
			if s, ok := p.text(k.Value, v, "1m"); ok {
				d, err := time.ParseDuration(s)
				if err != nil || d < 0 {
					p.errorf(v.Line, "drain-timeout %q: want a duration such as 1m or 30s (0s: stop a replaced client at once)", s)
				}
				f.drainTimeout = d
			}
		case "http":
			httpKey = k
			var entries []*yaml.Node
			entries, httpEntries = p.entries(k.Value, v, "- {host: app.example.com, upstream: http://127.0.0.1:3000}")
			httpUps = p.httpTunnels(entries)
		case "tcp":
			tcpKey = k
			var entries []*yaml.Node
			entries, tcpEntries = p.entries(k.Value, v, "- {upstream: 192.168.0.10, ports: 2222:22}")
			l4 = p.layer4Tunnels(entries)
		}
	})

	// What the whole file must have, when no line has it: said only of
	// keys that are missing, not of those whose value is wrong.
	if urlKey == nil {
		p.errorf(0, "url is required: the server, such as url: wss://tunnel.example.com")
	}
	distinct := map[string]bool{}
	for _, u := range urls {
		distinct[u.value] = true
		// client.New owns the rules of a server URL: asked of each URL
		// alone, its answer is that URL's line's.
		if err := probeConfig(func(cfg *client.Config) { cfg.URL = u.value }); err != nil {
			p.errorf(u.line, "%s", flagMessage(err))
		}
	}
	if f.servers = len(distinct); f.servers > client.MaxSessions {
		p.errorf(urlKey.Line, "url: %d servers; a client keeps at most %d sessions", f.servers, client.MaxSessions)
	}
	if flags.id != "" {
		if err := probeConfig(func(cfg *client.Config) { cfg.ID = flags.id }); err != nil {
			p.errorf(idKey.Line, "id: %v", err)
		}
	}
	var token string
	switch len(tokenKeys) {
	case 0:
		p.errorf(0, "a token is required: token-file: FILE, token-env: VARIABLE or token: TOKEN")
	case 1:
		if flags.token+flags.tokenFile+flags.tokenEnv != "" {
			var err error
			if token, err = readToken(flags.token, flags.tokenFile, flags.tokenEnv); err != nil {
				p.errorf(tokenKeys[0].Line, "%s", flagMessage(err))
			}
		}
	default:
		p.errorf(tokenKeys[1].Line, "%s and %s (line %d) are both given: keep one", tokenKeys[1].Value, tokenKeys[0].Value, tokenKeys[0].Line)
	}
	roots, err := loadCAIfAny(flags.tlsCA)
	if err != nil {
		p.errorf(caKey.Line, "%s", flagMessage(err))
	}
	if httpEntries+tcpEntries == 0 {
		switch {
		case httpKey == nil && tcpKey == nil:
			p.errorf(0, "no tunnels: give http: entries, such as - {host: app.example.com, upstream: http://127.0.0.1:3000}, or tcp: entries, such as - {upstream: 192.168.0.10, ports: 2222:22}")
		default:
			p.errorf(firstOf(httpKey, tcpKey).Line, "no tunnels: the http: and tcp: lists are empty")
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}

	for _, u := range urls {
		flags.urls = append(flags.urls, u.value)
	}
	flags.url = flags.urls[0]
	base := flags.build(token, roots)
	if len(httpUps) > 0 {
		cfg := base
		cfg.HTTP = httpUps
		f.configs[tunnel.ModeHTTP] = &cfg
		if err := validateConfig(cfg); err != nil {
			p.errorf(httpKey.Line, "%s", flagMessage(err))
		}
	}
	if l4.count() > 0 {
		cfg := base
		// Layer-4 upstreams are relayed byte for byte, never over the
		// client's TLS: upstream TLS settings are the HTTP client's alone,
		// and changing them does not replace the layer-4 client.
		cfg.UpstreamTLS = nil
		cfg.TCP, cfg.UDP, cfg.SNI = l4.tcp, l4.udp, l4.sni
		f.configs[tunnel.ModeTCP] = &cfg
		if err := validateConfig(cfg); err != nil {
			p.errorf(tcpKey.Line, "%s", flagMessage(err))
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// firstOf is the first of two nodes that is not nil.
func firstOf(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

// loadCAIfAny is loadCA, for a file given; nil roots without one.
func loadCAIfAny(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	return loadCA(file)
}

// layer4Tunnels are the tunnels of a file's tcp entries.
type layer4Tunnels struct {
	tcp []tunnel.TCPUpstream
	udp []tunnel.UDPUpstream
	sni []tunnel.TLSUpstream
}

func (t layer4Tunnels) count() int { return len(t.tcp) + len(t.udp) + len(t.sni) }

// httpTunnels parses http entries: each a host (default *) and its
// upstream URL, each host once in the file.
func (p *fileParser) httpTunnels(entries []*yaml.Node) []tunnel.HTTPUpstream {
	var out []tunnel.HTTPUpstream
	hosts := map[string]int{}
	for _, e := range entries {
		var hostNode, urlNode *yaml.Node
		p.fields(e, "in an http entry", httpEntryKeys, func(k, v *yaml.Node) {
			if k.Value == "host" {
				hostNode = v
			} else {
				urlNode = v
			}
		})
		host, hostLine := "*", e.Line
		if hostNode != nil {
			var ok bool
			if host, ok = p.text("host", hostNode, `app.example.com, "*.example.com" or "*"`); !ok {
				continue
			}
			hostLine = hostNode.Line
		}
		if urlNode == nil {
			p.errorf(e.Line, "an http entry needs upstream: URL, the local service, such as upstream: http://127.0.0.1:3000")
			continue
		}
		url, ok := p.text("upstream", urlNode, "http://127.0.0.1:3000")
		if !ok {
			continue
		}
		// The URL is checked first, for its own line: what
		// parseHTTPUpstream refuses after that is the host.
		if _, err := tunnel.ParseUpstreamURL(url); err != nil {
			p.errorf(urlNode.Line, "%v", err)
			continue
		}
		up, err := parseHTTPUpstream(host, url)
		if err != nil {
			p.errorf(hostLine, "%v", err)
			continue
		}
		if line, dup := hosts[up.Host]; dup {
			p.errorf(hostLine, "host %s is also at line %d: give each host once", up.Host, line)
			continue
		}
		hosts[up.Host] = hostLine
		out = append(out, up)
	}
	return out
}

// layer4Tunnels parses tcp entries: each an upstream host and the ports,
// UDP ports and TLS names relayed to it, each once in the file.
func (p *fileParser) layer4Tunnels(entries []*yaml.Node) layer4Tunnels {
	var out layer4Tunnels
	tcpSeen, udpSeen, names := map[int]int{}, map[int]int{}, map[string]int{}
	for _, e := range entries {
		var hostNode *yaml.Node
		var ports, udpPorts, sni []at
		given := 0
		p.fields(e, "in a tcp entry", tcpEntryKeys, func(k, v *yaml.Node) {
			switch k.Value {
			case "upstream":
				hostNode = v
				return
			case "ports":
				ports = p.list(k.Value, v, "2222:22,8000-8010")
			case "udp-ports":
				udpPorts = p.list(k.Value, v, "53,51820")
			case "sni":
				sni = p.list(k.Value, v, "db.example.com=5432")
			}
			given++
		})
		if hostNode == nil {
			p.errorf(e.Line, "a tcp entry needs upstream: HOST, the host its ports are relayed to, such as upstream: 192.168.0.10")
			continue
		}
		host, ok := p.text("upstream", hostNode, "192.168.0.10")
		if !ok {
			continue
		}
		if err := checkTCPHost(host); err != nil {
			p.errorf(hostNode.Line, "%s", flagMessage(err))
			continue
		}
		if given == 0 {
			p.errorf(e.Line, "a tcp entry needs ports, udp-ports or sni, such as ports: 2222:22, udp-ports: 53 or sni: db.example.com=5432")
			continue
		}
		for _, item := range ports {
			ups, err := parsePortMap("--ports", host, []string{item.value})
			if err != nil {
				p.errorf(item.line, "%s", flagMessage(err))
			}
			for _, up := range ups {
				if p.once(tcpSeen, up.Port, "port", item.line) {
					out.tcp = append(out.tcp, up)
				}
			}
		}
		for _, item := range udpPorts {
			ups, err := parsePortMap("--udp-ports", host, []string{item.value})
			if err != nil {
				p.errorf(item.line, "%s", flagMessage(err))
			}
			for _, up := range ups {
				if p.once(udpSeen, up.Port, "UDP port", item.line) {
					out.udp = append(out.udp, tunnel.UDPUpstream{Port: up.Port, Upstream: up.Upstream})
				}
			}
		}
		for _, item := range sni {
			ups, err := parseSNI([]string{host}, []string{item.value}, nil)
			if err != nil {
				p.errorf(item.line, "%s", flagMessage(err))
			}
			for _, up := range ups {
				if line, dup := names[up.Name]; dup {
					p.errorf(item.line, "TLS name %s is also at line %d: give each name once", up.Name, line)
					continue
				}
				names[up.Name] = item.line
				out.sni = append(out.sni, up)
			}
		}
	}
	return out
}

// once records that port is served from line, and reports whether it is
// the first time the file gives it.
func (p *fileParser) once(seen map[int]int, port int, what string, line int) bool {
	first, dup := seen[port]
	switch {
	case !dup:
		seen[port] = line
		return true
	case first == line:
		p.errorf(line, "%s %d is given twice on this line: give each port once", what, port)
	default:
		p.errorf(line, "%s %d is also at line %d: give each port once", what, port, first)
	}
	return false
}

// fields walks a mapping: each key once, and known (where says which
// level, for the message), given to set with its value.
func (p *fileParser) fields(m *yaml.Node, where string, known []string, set func(k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k.Line, "a key must be a name, such as %s, not %s", known[0], kindOf(k))
		case k.Tag == "!!merge":
			p.errorf(k.Line, "merge keys (<<) are not supported: write the keys out")
		case seen[k.Value] > 0:
			p.errorf(k.Line, "%s is given twice (also at line %d): keep one", k.Value, seen[k.Value])
		case !slices.Contains(known, k.Value):
			seen[k.Value] = k.Line
			p.errorf(k.Line, "%s", unknownKey(k.Value, where, known))
		default:
			seen[k.Value] = k.Line
			set(k, v)
		}
	}
}

// keyHomes says where the keys of the other levels go, for a key given at
// the wrong one.
var keyHomes = map[string]string{
	"url":       "at the top level (the server); an http entry's local service is upstream: URL",
	"host":      "in an http entry; a tcp entry's host is upstream: HOST",
	"upstream":  "in an http entry (upstream: URL) or a tcp entry (upstream: HOST)",
	"ports":     "in a tcp entry, with its upstream: HOST",
	"udp-ports": "in a tcp entry, with its upstream: HOST",
	"sni":       "in a tcp entry, with its upstream: HOST",
}

// unknownKey is the message for a key that is not one of known: the key
// it likely stands for, or where it goes, and the keys there are.
func unknownKey(key, where string, known []string) string {
	msg := fmt.Sprintf("unknown key %q %s", key, where)
	if home, ok := keyHomes[key]; ok || slices.Contains(topKeys, key) {
		if !ok {
			home = "at the top level"
		}
		return fmt.Sprintf("%s: %s goes %s", msg, key, home)
	}
	if s := suggestKey(key, known); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	}
	return msg + " The keys are: " + strings.Join(known, ", ")
}

// suggestKey is the known key a mistyped key likely stands for, or "":
// the same but for case, underscores or a flag's dashes (token_file,
// --url), or one within an edit or two (prots), or the one key it begins
// (insecure).
func suggestKey(key string, known []string) string {
	norm := strings.ToLower(strings.TrimLeft(strings.NewReplacer("_", "-", " ", "-").Replace(key), "-"))
	if len(norm) > 64 || norm == "" {
		return ""
	}
	best, bestDist := "", 1
	if len(norm) > 4 {
		bestDist = 2
	}
	var prefixed []string
	for _, k := range known {
		if k == norm {
			return k
		}
		if d := editDistance(norm, k); d <= bestDist {
			best, bestDist = k, d-1
		}
		if strings.HasPrefix(k, norm+"-") {
			prefixed = append(prefixed, k)
		}
	}
	if best == "" && len(prefixed) == 1 {
		best = prefixed[0]
	}
	return best
}

// editDistance counts the edits (a byte inserted, removed, replaced, or
// two swapped) from a to b.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// kindOf words what a node is, for a message: a list, a mapping, nothing,
// or the value.
func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// text is a single value: a string, a number or a boolean, as written. ok
// is false after the mistake is recorded.
func (p *fileParser) text(key string, n *yaml.Node, example string) (string, bool) {
	line := n.Line
	switch {
	case n.Kind != yaml.ScalarNode:
		p.errorf(line, "%s: want a single value, such as %s, not %s", key, example, kindOf(n))
	case n.Tag == "!!null":
		p.errorf(line, "%s has no value: give one, such as %s, or remove the line", key, example)
	case strings.TrimSpace(n.Value) == "":
		p.errorf(line, "%s is empty: give a value, such as %s, or remove the line", key, example)
	default:
		return strings.TrimSpace(n.Value), true
	}
	return "", false
}

// list is a value given as one string or a list of them (url, peer, a tcp
// entry's ports), each split at commas as the flags' values are.
func (p *fileParser) list(key string, n *yaml.Node, example string) []at {
	items := []*yaml.Node{n}
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.SequenceNode:
		items = n.Content
		if len(items) == 0 {
			p.errorf(n.Line, "%s is an empty list: give one or more values, such as %s, or remove the line", key, example)
		}
	default:
		p.errorf(n.Line, "%s: want a value or a list of values, such as %s, not %s", key, example, kindOf(n))
		return nil
	}
	var out []at
	for _, item := range items {
		s, ok := p.text(key, item, example)
		if !ok {
			continue
		}
		values := splitList(s)
		if len(values) == 0 {
			p.errorf(item.Line, "%s %q has no value: give one, such as %s", key, s, example)
		}
		for _, v := range values {
			out = append(out, at{value: v, line: item.Line})
		}
	}
	return out
}

// boolean is a true or false value.
func (p *fileParser) boolean(key string, n *yaml.Node) bool {
	line := n.Line
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		switch strings.ToLower(n.Value) {
		case "true":
			return true
		case "false":
			return false
		}
	}
	p.errorf(line, "%s: want true or false, not %s", key, kindOf(n))
	return false
}

// number is a whole number.
func (p *fileParser) number(key string, n *yaml.Node, example string) (int, bool) {
	line := n.Line
	if n.Kind == yaml.ScalarNode {
		var v int
		var err error
		if n.Tag == "!!int" {
			err = n.Decode(&v) // 1_000, 0x10
		} else {
			v, err = strconv.Atoi(n.Value) // "10000"
		}
		if err == nil {
			return v, true
		}
	}
	p.errorf(line, "%s: want a whole number, such as %s, not %s", key, example, kindOf(n))
	return 0, false
}

// entries are the items of http: or tcp:, each a mapping, and how many
// items the list has, good or not. A key without a value (every entry
// commented out) has none.
func (p *fileParser) entries(key string, n *yaml.Node, example string) ([]*yaml.Node, int) {
	line := n.Line
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, 0
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(line, "%s: want a list of entries, each starting with -, such as %s; not %s", key, example, kindOf(n))
		return nil, 1
	}
	var out []*yaml.Node
	for _, e := range n.Content {
		if e.Kind != yaml.MappingNode {
			p.errorf(e.Line, "%s entry: want keys, such as %s; not %s", key, example, kindOf(e))
			continue
		}
		out = append(out, e)
	}
	return out, len(n.Content)
}

// decodeClientFile reads a file's YAML: the top node of its one document,
// nil for a file without one (empty, or comments only).
func decodeClientFile(path string, data []byte) (top *yaml.Node, err error) {
	whole := func(line int, msg string) error {
		return &fileErrors{path: path, errs: []fileError{{line: line, msg: oneLine(msg)}}}
	}
	defer func() {
		// The YAML parser is not this program's: a file it fails on must
		// not end a client that runs the last good configuration.
		if r := recover(); r != nil {
			top, err = nil, whole(0, fmt.Sprintf("YAML: the parser failed on this file (%v): check its syntax", r))
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(path, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(path, data, err)
	default:
		return nil, whole(next.Line, "a second YAML document (after ---): a config file is one document")
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	if alias := findAlias(&doc); alias != nil {
		// An alias is expanded wherever it is used: a few bytes could
		// stand for millions of ports.
		return nil, whole(alias.Line, "an alias (*"+alias.Value+"): a client file has none: write the value out where it is used")
	}
	return doc.Content[0], nil
}

// findAlias returns the first alias node under n, or nil. It does not
// follow aliases, so it visits each node of the file once.
func findAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if a := findAlias(c); a != nil {
			return a
		}
	}
	return nil
}

// yamlLine is how the YAML parser names the line of a syntax error.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError words a YAML syntax error as FILE:LINE: and, for the mistakes
// a newcomer to YAML makes, the fix.
func yamlError(path string, data []byte, err error) error {
	msg, line := err.Error(), 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	alias := false
	if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		// An unknown anchor has no line: it is where *NAME is.
		name, _, _ = strings.Cut(name, "' referenced")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			line = bytes.Count(data[:i], []byte("\n")) + 1
		}
		alias = true
	}
	text := ""
	if lines := strings.Split(string(data), "\n"); line >= 1 && line <= len(lines) {
		text = lines[line-1]
	}
	switch {
	case strings.Contains(msg, "tab character") || strings.HasPrefix(strings.TrimLeft(text, " "), "\t"):
		msg += ": indent with spaces, not tabs"
	case strings.Contains(text, "*") && (alias || strings.Contains(msg, "alphabetic or numeric")):
		msg += `: quote a value that starts with *, such as host: "*.example.com" (a bare * starts a YAML alias)`
	case strings.Contains(msg, "mapping values are not allowed"):
		msg += `: quote a value that holds ": "`
	}
	return &fileErrors{path: path, errs: []fileError{{line: line, msg: oneLine("YAML: " + msg)}}}
}

// validateConfig is client.New's check of cfg, which the parsers of values
// leave to it (the URLs, the client ID, the announcement as a whole). A
// client New builds may have started the reverse proxy of path-prefixed
// upstreams, which only Run stops: it is run with an ended context, which
// returns at once, without dialling.
func validateConfig(cfg client.Config) error {
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.LookupHost = func(context.Context, string) ([]string, error) { return nil, nil }
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Run(ctx)
	return nil
}

// probeConfig asks validateConfig of one setting, in a config otherwise
// good: its answer is that setting's, for that setting's line.
func probeConfig(set func(*client.Config)) error {
	cfg := client.Config{URL: "ws://127.0.0.1", Token: "probe", HTTP: []tunnel.HTTPUpstream{{Host: "*", URL: "http://127.0.0.1"}}}
	set(&cfg)
	return validateConfig(cfg)
}

// summary is --check's line: the tunnels of the file and its servers.
func (f *clientFile) summary() string {
	return fmt.Sprintf("%s: OK: %s; %s", f.path, strings.Join(f.counts(), ", "), plural(f.servers, "server"))
}

// counts words the tunnels of every mode of f.
func (f *clientFile) counts() []string {
	var out []string
	for _, m := range fileModes {
		if cfg := f.configs[m.mode]; cfg != nil {
			out = append(out, tunnelCounts(cfg)...)
		}
	}
	return out
}

// tunnelCounts words how many tunnels of each kind cfg has: "3 HTTP
// hosts", "1 UDP port".
func tunnelCounts(cfg *client.Config) []string {
	var out []string
	for _, c := range []struct {
		n    int
		what string
	}{{len(cfg.HTTP), "HTTP host"}, {len(cfg.TCP), "TCP port"}, {len(cfg.UDP), "UDP port"}, {len(cfg.SNI), "TLS name"}} {
		if c.n > 0 {
			out = append(out, plural(c.n, c.what))
		}
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
