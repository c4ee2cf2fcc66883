// Command inlets is the standalone tunnel client of caddy-inlets:
//
//	inlets http client --url wss://tunnel.example.com --token-file ./token \
//		--upstream app.example.com=http://127.0.0.1:3000
//
// It holds no Caddy: it is small enough for the edge devices it runs on.
package main

import (
	"os"

	"github.com/caddy-inlets/caddy-inlets/internal/cli"
)

func main() {
	os.Exit(cli.Main("inlets", os.Args[1:], os.Stdout, os.Stderr))
}
