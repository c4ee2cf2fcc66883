package inlets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-inlets/caddy-inlets/handler"
)

// caddyfileSeeds are the Caddyfiles of the adapt fixtures and the
// examples: every form the parsers know.
func caddyfileSeeds(f *testing.F) []string {
	var seeds []string
	fixtures, _ := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	examples, _ := filepath.Glob("examples/*.Caddyfile")
	for _, file := range append(fixtures, examples...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		before, _, _ := strings.Cut(string(data), "----------")
		seeds = append(seeds, before)
	}
	return seeds
}

// dispenser tokenizes input as Caddy's adapter does: a lexing error is an
// error, never an exit (NewTestDispenser exits the process).
func dispenser(input string) (*caddyfile.Dispenser, bool) {
	tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
	if err != nil {
		return nil, false
	}
	return caddyfile.NewDispenser(tokens), true
}

// FuzzGlobalOption feeds the `inlets` global option's parser (its tcp
// and tunnel blocks included) any body: an error or an app, never a
// panic.
func FuzzGlobalOption(f *testing.F) {
	for _, seed := range caddyfileSeeds(f) {
		if i := strings.Index(seed, "\tinlets {"); i >= 0 {
			f.Add(seed[i+1:])
		}
	}
	f.Add("inlets {\n\ttcp {\n\t\tports 2222\n\t}\n\ttcp\n}")
	f.Fuzz(func(t *testing.T, input string) {
		d, ok := dispenser(input)
		if !ok || !d.Next() || d.Val() != "inlets" {
			return
		}
		d.Prev()
		parseGlobalOption(d, nil)
	})
}

// FuzzHandlerDirective feeds the `inlets` directive's parser any body:
// an error or a handler, never a panic.
func FuzzHandlerDirective(f *testing.F) {
	f.Add("inlets {\n\ttoken x\n\tallow_hosts *.example.com\n\tmax_clients 10\n\tstream_window 1MiB\n\tmax_unread 64MiB\n\tauth_failures 10 1m\n\tlb_policy least_conn\n\tlb_try_duration 5s\n}")
	f.Add("inlets control {\n\ttoken_sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n\tpeers ws://a:1 wss://b\n}")
	f.Add("inlets data")
	f.Add("inlets bogus")
	f.Fuzz(func(t *testing.T, input string) {
		d, ok := dispenser(input)
		if !ok || !d.Next() || d.Val() != "inlets" {
			return
		}
		d.Prev()
		h := new(handler.Handler)
		if h.UnmarshalCaddyfile(d) == nil && h.Plane != "" && h.Plane != handler.PlaneControl && h.Plane != handler.PlaneData {
			t.Fatalf("plane %q accepted", h.Plane)
		}
	})
}
