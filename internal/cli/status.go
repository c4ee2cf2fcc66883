package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

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
	var url, token, tokenFile, tlsCA string
	var insecure, asJSON bool
	fs.StringVar(&url, "url", "", "the server's control plane as clients are given it (ws://HOST:PORT, wss://HOST) or its http(s):// twin; the status is read from /status there")
	fs.StringVar(&token, "token", "", "the server's token")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the server's token")
	fs.StringVar(&tlsCA, "tls-ca", "", "PEM file of a private CA to trust for wss:// and https://")
	fs.BoolVar(&insecure, "insecure-skip-verify", false, "do not verify the server's certificate (testing only)")
	fs.BoolVar(&asJSON, "json", false, "print the server's JSON instead of the table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return 2
	}
	if url == "" {
		fmt.Fprintf(stderr, "%s: --url is required, e.g. --url wss://tunnel.example.com\n", name)
		return 2
	}
	tok, err := readToken(token, tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	tlsConfig, err := statusTLS(tlsCA, insecure)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: tlsConfig,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	st, raw, err := status.Fetch(ctx, client, url, tok)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if asJSON {
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

// statusTLS is the TLS configuration of the status request, nil for the
// defaults.
func statusTLS(caFile string, insecure bool) (*tls.Config, error) {
	if caFile == "" && !insecure {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
