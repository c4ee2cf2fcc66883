package cli

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
	"github.com/dustin/go-humanize"
)

// What a reload of a config file does to each mode's client is decided
// from the old file and the new one alone, and worded for the log, here;
// client_run.go carries it out.

// reloadAction is what a reload does to one mode's client.
type reloadAction int

const (
	// noClient: neither file has tunnels of the mode.
	noClient reloadAction = iota
	// keepClient: the mode's config is the same; its client, sessions
	// and streams go on untouched.
	keepClient
	// startClient: the new file has tunnels of a mode the old one had
	// none of.
	startClient
	// replaceClient: the config changed; a new client takes over, then
	// the old one drains and stops.
	replaceClient
	// stopClient: the new file has no tunnels of the mode; its client
	// drains and stops.
	stopClient
)

// modeChange is a reload's decision for one mode.
type modeChange struct {
	mode, label string
	action      reloadAction
	// old and new are the mode's configs in the old and the new file,
	// nil where the file has no tunnels of the mode.
	old, new *client.Config
	// changes words what differs, for replaceClient.
	changes []string
}

// planReload decides, for each mode, what loading next in place of old
// does (old nil: the first start).
func planReload(old, next *clientFile) []modeChange {
	var plan []modeChange
	for _, m := range fileModes {
		ch := modeChange{mode: m.mode, label: m.label, new: next.configs[m.mode]}
		if old != nil {
			ch.old = old.configs[m.mode]
		}
		switch {
		case ch.old == nil && ch.new == nil:
			ch.action = noClient
		case ch.old == nil:
			ch.action = startClient
		case ch.new == nil:
			ch.action = stopClient
		default:
			if ch.changes = configChanges(ch.old, ch.new); len(ch.changes) == 0 {
				ch.action = keepClient
			} else {
				ch.action = replaceClient
			}
		}
		plan = append(plan, ch)
	}
	return plan
}

// describePlan words a plan for the log: what changed first, then what
// did not.
func describePlan(plan []modeChange) string {
	var changed, same []string
	for _, ch := range plan {
		switch ch.action {
		case keepClient:
			same = append(same, ch.label+" unchanged")
		case startClient:
			changed = append(changed, fmt.Sprintf("%s tunnels added (%s)", ch.label, strings.Join(tunnelCounts(ch.new), ", ")))
		case replaceClient:
			changed = append(changed, fmt.Sprintf("%s tunnels changed (%s)", ch.label, strings.Join(ch.changes, ", ")))
		case stopClient:
			changed = append(changed, fmt.Sprintf("%s tunnels removed (%s)", ch.label, strings.Join(tunnelCounts(ch.old), ", ")))
		}
	}
	if len(changed) == 0 {
		return "nothing changed"
	}
	return strings.Join(append(changed, same...), "; ")
}

// configChanges words how two configs of a mode differ in what makes the
// client: its servers, token, ID, tunnels, TLS settings, limits and peers
// (not its Logger or LookupHost, which are the process's). None: the
// running client is the one the new config would make. The order of the
// servers, peers and tunnels does not matter.
func configChanges(a, b *client.Config) []string {
	var out []string
	out = append(out, setChanges("servers", append([]string{a.URL}, a.URLs...), append([]string{b.URL}, b.URLs...))...)
	if a.Token != b.Token {
		out = append(out, "token changed")
	}
	if a.ID != b.ID {
		id := "random"
		if b.ID != "" {
			id = strconv.Quote(b.ID)
		}
		out = append(out, "id now "+id)
	}
	out = append(out, tunnelChanges("hosts", byKey(a.HTTP, hostOf), byKey(b.HTTP, hostOf), strings.Join)...)
	out = append(out, tunnelChanges("ports", byKey(a.TCP, tcpPort), byKey(b.TCP, tcpPort), joinPorts)...)
	out = append(out, tunnelChanges("UDP ports", byKey(a.UDP, udpPort), byKey(b.UDP, udpPort), joinPorts)...)
	out = append(out, tunnelChanges("TLS names", byKey(a.SNI, sniName), byKey(b.SNI, sniName), strings.Join)...)
	if !sameTLS(a.TLS, b.TLS) {
		out = append(out, "server TLS settings changed (tls-ca, insecure-skip-verify)")
	}
	if !sameTLS(a.UpstreamTLS, b.UpstreamTLS) {
		out = append(out, "upstream TLS settings changed (tls-ca, upstream-insecure-skip-verify)")
	}
	if n := cmp.Or(b.MaxStreams, client.DefaultMaxStreams); cmp.Or(a.MaxStreams, client.DefaultMaxStreams) != n {
		out = append(out, fmt.Sprintf("max-streams now %d", n))
	}
	if n := cmp.Or(b.MaxUnread, client.DefaultMaxUnread); cmp.Or(a.MaxUnread, client.DefaultMaxUnread) != n {
		out = append(out, "max-unread now "+humanize.IBytes(uint64(n)))
	}
	out = append(out, setChanges("peers", a.Peers, b.Peers)...)
	// What a file does not set, compared so that a setting added to the
	// file one day cannot be missed here.
	if a.ResolveInterval != b.ResolveInterval || a.DialTimeout != b.DialTimeout || a.MaxStreamWindow != b.MaxStreamWindow ||
		a.MinBackoff != b.MinBackoff || a.MaxBackoff != b.MaxBackoff {
		out = append(out, "connection settings changed")
	}
	return out
}

// sameTLS reports whether two TLS configs, as clientFlags.build makes
// them, trust the same: nil for the defaults, else roots and whether to
// verify at all.
func sameTLS(a, b *tls.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.InsecureSkipVerify == b.InsecureSkipVerify && a.RootCAs.Equal(b.RootCAs)
}

// setChanges words the items of b not in a, and of a not in b.
func setChanges(what string, a, b []string) []string {
	as, bs := make(map[string]string, len(a)), make(map[string]string, len(b))
	for _, s := range a {
		as[s] = ""
	}
	for _, s := range b {
		bs[s] = ""
	}
	return tunnelChanges(what, as, bs, strings.Join)
}

// byKey maps tunnels by what the server routes on (a host, a port, a TLS
// name) to the whole tunnel as text, so that any change to one shows.
func byKey[T any, K comparable](tunnels []T, key func(T) K) map[K]string {
	out := make(map[K]string, len(tunnels))
	for _, t := range tunnels {
		out[key(t)] = fmt.Sprintf("%+v", t)
	}
	return out
}

func hostOf(up tunnel.HTTPUpstream) string { return up.Host }
func tcpPort(up tunnel.TCPUpstream) int    { return up.Port }
func udpPort(up tunnel.UDPUpstream) int    { return up.Port }
func sniName(up tunnel.TLSUpstream) string { return up.Name }

// tunnelChanges words the keys added to b, removed from a, and those
// whose tunnel changed, each list written by join.
func tunnelChanges[K cmp.Ordered](what string, a, b map[K]string, join func([]K, string) string) []string {
	var added, removed, changed []K
	for k, v := range b {
		if old, ok := a[k]; !ok {
			added = append(added, k)
		} else if old != v {
			changed = append(changed, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			removed = append(removed, k)
		}
	}
	var out []string
	for _, l := range []struct {
		keys []K
		verb string
	}{{added, "added"}, {removed, "removed"}, {changed, "relayed elsewhere"}} {
		if len(l.keys) > 0 {
			slices.Sort(l.keys)
			out = append(out, fmt.Sprintf("%s %s %s", what, shorten(join(l.keys, ", ")), l.verb))
		}
	}
	return out
}

// joinPorts writes sorted ports as runs: 22, 8000-8010.
func joinPorts(ports []int, sep string) string { return strings.Join(portRanges(ports), sep) }

// shorten keeps a list in a log line within reason.
func shorten(s string) string {
	if len(s) <= 120 {
		return s
	}
	cut := strings.LastIndex(s[:120], ", ")
	if cut < 0 {
		cut = 120
	}
	return s[:cut] + ", …"
}
