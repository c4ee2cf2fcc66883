package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/caddy-inlets/caddy-inlets/config"
)

// visitorFlags adds the flags of a tunnel's visitors policy to fs, each
// name after prefix ("" for `tunnel visitors`, "visitor-" for `tunnel
// create`); the function it returns gives the policy the flags set, nil
// when they set nothing.
func visitorFlags(fs *flag.FlagSet, prefix string) func() (*config.Visitors, error) {
	var v config.Visitors
	prefixes := func(list *[]string) func(string) error {
		return func(s string) error {
			for _, p := range splitList(s) {
				if _, err := config.ParseVisitorPrefix(p); err != nil {
					return err
				}
				*list = append(*list, p)
			}
			return nil
		}
	}
	rate := func(into *float64) func(string) error {
		return func(s string) error {
			r, err := config.ParseRate(s)
			*into = r
			return err
		}
	}
	fs.Func(prefix+"allow", "only visitors from this `CIDR` or address may visit the tunnel's hosts, ports and TLS names; repeatable", prefixes(&v.Allow))
	fs.Func(prefix+"deny", "refuse visitors from this `CIDR` or address, even when allowed; repeatable", prefixes(&v.Deny))
	fs.Func(prefix+"rate", "HTTP requests per visitor address (an IPv6 /64), as `N/s`, N/m or N/h; past it, 429 with Retry-After", rate(&v.RequestsPerSecond))
	burst := fs.Int(prefix+"burst", 0, "requests a visitor may send at once within its rate (default: the rate a second)")
	fs.Func(prefix+"connection-rate", "new TCP and TLS connections and UDP flows per visitor address, as `N/s`, N/m or N/h; past it, refused", rate(&v.ConnectionsPerSecond))
	connBurst := fs.Int(prefix+"connection-burst", 0, "new connections a visitor may open at once within its connection rate (default: the rate a second)")
	bandwidth := func(into *int64) func(string) error {
		return func(s string) error {
			n, err := config.ParseBandwidth(s)
			*into = n
			return err
		}
	}
	fs.Func(prefix+"bandwidth-down", "at most `BYTES/s` (10MB/s, 512KiB/s) to the tunnel's visitors, all its clients and visitors together", bandwidth(&v.BandwidthDown))
	fs.Func(prefix+"bandwidth-up", "at most `BYTES/s` from the tunnel's visitors, all together", bandwidth(&v.BandwidthUp))
	var basic config.BasicAuth
	fs.Func(prefix+"basic-auth", "HTTP visitors log in as `USER=HASH`, the hash from `caddy hash-password` (bcrypt); repeatable", func(s string) error {
		user, hash, ok := strings.Cut(s, "=")
		if !ok || user == "" || hash == "" {
			return fmt.Errorf("%q: want USER=HASH, the hash from `caddy hash-password`", s)
		}
		basic.Accounts = append(basic.Accounts, config.Account{Username: user, Password: hash})
		return nil
	})
	fs.StringVar(&basic.Realm, prefix+"basic-auth-realm", "", "the `REALM` browsers show for basic auth (default: restricted)")
	var forward config.ForwardAuth
	fs.StringVar(&forward.Upstream, prefix+"forward-auth", "", "ask the service at `HOST:PORT` (or http(s)://HOST[:PORT]) about each HTTP request first, as Caddy's forward_auth does")
	fs.StringVar(&forward.URI, prefix+"forward-auth-uri", "", "the `URI` forward auth asks, such as /api/verify")
	fs.Func(prefix+"forward-auth-copy-header", "a `HEADER` (or FROM>TO) of forward auth's 2xx answer set on the request; repeatable", func(s string) error {
		forward.CopyHeaders = append(forward.CopyHeaders, s)
		return nil
	})
	fs.Func(prefix+"auth-skip", "a request `PATH` pattern that needs no auth, such as /hook/*; repeatable", func(s string) error {
		v.AuthSkip = append(v.AuthSkip, s)
		return nil
	})
	return func() (*config.Visitors, error) {
		v.RequestBurst, v.ConnectionBurst = *burst, *connBurst
		if len(basic.Accounts) > 0 || basic.Realm != "" {
			v.BasicAuth = &basic
		}
		if forward.Upstream != "" || forward.URI != "" || len(forward.CopyHeaders) > 0 {
			v.ForwardAuth = &forward
		}
		if err := v.Validate(); err != nil {
			// The policy's messages name its JSON fields; say the flags.
			flag := func(name string) string { return "--" + prefix + name }
			return nil, errors.New(strings.NewReplacer(
				"requests_per_second", flag("rate"), "connections_per_second", flag("connection-rate"),
				"bandwidth_down", flag("bandwidth-down"), "bandwidth_up", flag("bandwidth-up"),
				"basic_auth", flag("basic-auth"), "forward_auth", flag("forward-auth"), "auth_skip", flag("auth-skip"),
			).Replace(err.Error()))
		}
		if len(v.Allow)+len(v.Deny) == 0 && v.RequestsPerSecond == 0 && v.ConnectionsPerSecond == 0 && v.BandwidthDown == 0 && v.BandwidthUp == 0 && !v.HasAuth() {
			return nil, nil
		}
		return &v, nil
	}
}

func runTunnelVisitors(r tunnelRun, args []string) int {
	fs, address := r.flags()
	policy := visitorFlags(fs, "")
	clear := fs.Bool("clear", false, "remove the tunnel's visitors policy: anyone may visit, at any rate")
	replace := fs.Bool("replace", false, "replace a policy that has basic or forward auth with one that has none (without it, that is refused)")
	setUsage(fs, "NAME [--allow CIDR]... [--deny CIDR]... [--rate N/s] [--connection-rate N/s] [--bandwidth-down BYTES/s] [--clear] [flags]",
		"Sets who may visit tunnel NAME's hosts, ports and TLS names, and how often,\nreplacing its visitors policy with what the flags give; with no flag, prints it.\nA graceful reload: no client reconnects. See docs/visitors.md.",
		"  %[1]s acme --allow 203.0.113.0/24 --allow 2001:db8::/32 --rate 600/m --burst 50\n  %[1]s acme --connection-rate 2/s\n  %[1]s acme --clear")
	name, code, ok := r.parse(fs, args, 1)
	if !ok {
		return code
	}
	v, err := policy()
	if err != nil {
		return r.fail(2, err)
	}
	if *clear && v != nil {
		return r.fail(2, errors.New("--clear removes the policy: give it alone, or give the new policy without it"))
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
	path := tunnelsPath + name + "/visitors"
	switch {
	case *clear:
		var tun config.Tunnel
		if json.Unmarshal(raw, &tun) == nil && tun.Visitors == nil {
			fmt.Fprintf(r.stdout, "Tunnel %s has no visitors policy: anyone may visit it.\n", name)
			return 0
		}
		if _, _, err := api.call(ctx, http.MethodDelete, path, nil, nil); err != nil {
			return r.fail(1, refused(err))
		}
		fmt.Fprintf(r.stdout, "Removed tunnel %s's visitors policy: anyone may visit it.\n", name)
	case v != nil:
		var tun config.Tunnel
		if err := json.Unmarshal(raw, &tun); err != nil {
			return r.fail(1, fmt.Errorf("reading tunnel %s from Caddy's config: %w", name, err))
		}
		if tun.Visitors.HasAuth() && !v.HasAuth() && !*replace {
			return r.fail(2, fmt.Errorf("tunnel %s's visitors must authenticate (%s), and these flags replace its whole policy: give --basic-auth or --forward-auth again, or add --replace to let its visitors in without", name, describeVisitors(tun.Visitors)))
		}
		if tun.Visitors != nil {
			fmt.Fprintf(r.stdout, "Replacing tunnel %s's visitors: %s.\n", name, describeVisitors(tun.Visitors))
		}
		// POST sets the object whether or not the tunnel had one.
		if _, _, err := api.call(ctx, http.MethodPost, path, v, nil); err != nil {
			return r.fail(1, refused(err))
		}
		fmt.Fprintf(r.stdout, "Tunnel %s's visitors: %s.\n", name, describeVisitors(v))
	default:
		var tun config.Tunnel
		if err := json.Unmarshal(raw, &tun); err != nil {
			return r.fail(1, fmt.Errorf("reading tunnel %s from Caddy's config: %w", name, err))
		}
		fmt.Fprintf(r.stdout, "Tunnel %s's visitors: %s.\n", name, describeVisitors(tun.Visitors))
	}
	return 0
}

// describeVisitors says what a policy asks, in a line.
func describeVisitors(v *config.Visitors) string {
	if v == nil {
		return "anyone, at any rate"
	}
	var parts []string
	if len(v.Allow) > 0 {
		parts = append(parts, "only from "+strings.Join(v.Allow, " "))
	}
	if len(v.Deny) > 0 {
		parts = append(parts, "never from "+strings.Join(v.Deny, " "))
	}
	if v.RequestsPerSecond > 0 {
		parts = append(parts, fmt.Sprintf("%g requests/s per visitor (burst %d)", v.RequestsPerSecond, config.Burst(v.RequestsPerSecond, v.RequestBurst)))
	}
	if v.ConnectionsPerSecond > 0 {
		parts = append(parts, fmt.Sprintf("%g new connections/s per visitor (burst %d)", v.ConnectionsPerSecond, config.Burst(v.ConnectionsPerSecond, v.ConnectionBurst)))
	}
	if v.BandwidthDown > 0 {
		parts = append(parts, "at most "+humanize.IBytes(uint64(v.BandwidthDown))+"/s down")
	}
	if v.BandwidthUp > 0 {
		parts = append(parts, "at most "+humanize.IBytes(uint64(v.BandwidthUp))+"/s up")
	}
	if v.BasicAuth != nil {
		parts = append(parts, fmt.Sprintf("basic auth, %d account(s)", len(v.BasicAuth.Accounts)))
	}
	if v.ForwardAuth != nil {
		parts = append(parts, "forward auth to "+v.ForwardAuth.Upstream+v.ForwardAuth.URI)
	}
	if len(v.AuthSkip) > 0 {
		parts = append(parts, "no auth for "+strings.Join(v.AuthSkip, " "))
	}
	if len(parts) == 0 {
		return "anyone, at any rate"
	}
	return strings.Join(parts, "; ")
}
