package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/caddy-inlets/caddy-inlets/config"
)

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
