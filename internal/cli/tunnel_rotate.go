package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddy-inlets/caddy-inlets/config"
)

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
