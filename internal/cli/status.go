package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-inlets/caddy-inlets/client"
	"github.com/caddy-inlets/caddy-inlets/status"
)

// statusTimeout bounds the whole status request.
const statusTimeout = 15 * time.Second

// now is the clock of the status table.
var now = time.Now

// runStatus prints the status of the server at --url: the table, or the
// JSON with --json. Every failure is one line on stderr and exit status 1.
func runStatus(name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var server serverFlags
	server.register(fs, "as clients are given it (ws://HOST:PORT, wss://HOST) or its http(s):// twin; the status is read from /status there", false)
	asJSON := fs.Bool("json", false, "print the server's JSON instead of the table")
	setUsage(fs, "--url URL... (--token TOKEN | --token-file FILE | --token-env VARIABLE) [--json]",
		"Prints the clients connected to a caddy-inlets server, as a table (or the server's\nJSON): their IDs, addresses, upstreams and how long they have been connected.\nWith several --url (the servers of a fleet), each server's view, then which server\nmisses which client; it exits 1 when one does, or when a server does not answer.",
		"  %[1]s --url wss://tunnel.example.com --token-file ./token\n  %[1]s --url ws://127.0.0.1:8123 --token s3cret --json", "url", "token")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	tok, roots, err := server.resolve()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	httpClient := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: server.tlsConfig(roots),
	}}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	if len(server.urls) > 1 {
		return fleetStatus(ctx, name, httpClient, server.urls, tok, *asJSON, stdout, stderr)
	}
	st, raw, err := status.Fetch(ctx, httpClient, server.url, tok)
	if err != nil {
		if hint := client.Hint(err); hint != "" {
			fmt.Fprintf(stderr, "%s: %v: %s\n", name, err, hint)
			return 1
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if *asJSON {
		_, err = stdout.Write(raw)
	} else {
		err = status.WriteTable(stdout, st, now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// fleetStatus asks every server at once and prints each one's view, then
// which server misses which client (--json: a list of the answers). It
// exits 1 when a server did not answer, or misses a client.
func fleetStatus(ctx context.Context, name string, hc *http.Client, urls []string, token string, asJSON bool, stdout, stderr io.Writer) int {
	servers := make([]status.ServerStatus, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i].URL = u
			st, _, err := status.Fetch(ctx, hc, u, token)
			if err != nil {
				msg := err.Error()
				if hint := client.Hint(err); hint != "" {
					msg += ": " + hint
				}
				servers[i].Error = msg
				return
			}
			servers[i].Status = &st
		}()
	}
	wg.Wait()
	var err error
	if asJSON {
		var body []byte
		if body, err = json.MarshalIndent(map[string]any{"servers": servers}, "", "  "); err == nil {
			_, err = stdout.Write(append(body, '\n'))
		}
	} else {
		var b strings.Builder
		err = status.WriteFleetTable(&b, servers, now())
		io.WriteString(stdout, b.String())
		if err == nil && strings.Contains(b.String(), "Missing: ") {
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	for _, s := range servers {
		if s.Status == nil {
			return 1
		}
	}
	return 0
}
