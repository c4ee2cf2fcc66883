// Command caddy is Caddy with its standard modules and caddy-inlets: the
// same binary `xcaddy build --with github.com/caddy-inlets/caddy-inlets`
// produces, for `go run`, tests and benchmarks from a checkout.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-l4"

	_ "github.com/caddy-inlets/caddy-inlets"
)

func main() {
	caddycmd.Main()
}
