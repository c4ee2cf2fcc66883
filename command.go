package inlets

import (
	"os"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-inlets/caddy-inlets/internal/cli"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "inlets",
		Usage: "http client|tcp client|status|tunnel|version [flags]",
		Short: "Runs an inlets tunnel client, prints a server's status, or manages its tunnels",
		Long: `
Runs the inlets tunnel client that is also available as the standalone
'inlets' binary, e.g.:

  caddy inlets http client --url wss://tunnel.example.com --token-file ./token \
    --upstream app.example.com=http://127.0.0.1:3000

and prints a server's status, as the 'inlets status' command does:

  caddy inlets status --url wss://tunnel.example.com --token-file ./token

and creates, lists, rotates and deletes the tunnels of this Caddy through
its admin API (--address, as 'caddy reload' has):

  caddy inlets tunnel create acme --host '*.acme.example.com' --tcp-port 2201
  caddy inlets tunnel list
  caddy inlets tunnel rotate acme --grace 1h
  caddy inlets tunnel delete acme
`,
		CobraFunc: func(cmd *cobra.Command) {
			// The client parses its own flags.
			cmd.DisableFlagParsing = true
			cmd.RunE = func(_ *cobra.Command, args []string) error {
				if code := cli.Main("caddy inlets", args, os.Stdout, os.Stderr); code != 0 {
					os.Exit(code)
				}
				return nil
			}
		},
	})
}
