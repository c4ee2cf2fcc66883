package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// serverFlags are the flags of every command that talks to a server: where
// it is, its token, and how to trust its certificate.
type serverFlags struct {
	// urls are the servers, in the order given; url is the first.
	urls                                   []string
	url, token, tokenFile, tokenEnv, tlsCA string
	insecure                               bool
}

func (f *serverFlags) register(fs *flag.FlagSet, urlHelp string, upstreamsToo bool) {
	fs.Func("url", "the server's control plane `URL`: "+urlHelp+"; repeatable (or comma-separated) for the servers of a fleet", func(s string) error {
		for _, u := range splitList(s) {
			if f.url == "" {
				f.url = u
			}
			f.urls = append(f.urls, u)
		}
		return nil
	})
	fs.StringVar(&f.token, "token", "", "the server's `TOKEN` (or --token-file, or --token-env)")
	fs.StringVar(&f.tokenFile, "token-file", "", "a `FILE` holding the server's token")
	fs.StringVar(&f.tokenEnv, "token-env", "", "an environment `VARIABLE` holding the server's token: out of the command line, which other users may see, and out of files")
	ca := "a PEM `FILE` of a private CA to trust for the server's wss://"
	if upstreamsToo {
		ca += " and for https:// upstreams"
	}
	fs.StringVar(&f.tlsCA, "tls-ca", "", ca)
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "do not verify the server's certificate (testing only)")
}

// resolve checks the URL, reads the token and loads the CA, if any.
func (f *serverFlags) resolve() (token string, roots *x509.CertPool, err error) {
	if f.url == "" {
		return "", nil, errors.New("--url is required, e.g. --url wss://tunnel.example.com")
	}
	if token, err = readToken(f.token, f.tokenFile, f.tokenEnv); err != nil {
		return "", nil, err
	}
	if f.tlsCA != "" {
		if roots, err = loadCA(f.tlsCA); err != nil {
			return "", nil, err
		}
	}
	return token, roots, nil
}

// tlsConfig is the TLS configuration for the server, nil for the defaults.
func (f *serverFlags) tlsConfig(roots *x509.CertPool) *tls.Config {
	if roots == nil && !f.insecure {
		return nil
	}
	return &tls.Config{RootCAs: roots, InsecureSkipVerify: f.insecure}
}

// loadCA returns the system's roots plus the PEM certificates in file.
func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", file)
	}
	return pool, nil
}

// readToken returns the token given directly, in a file or in an
// environment variable: one of them.
func readToken(token, file, env string) (string, error) {
	given := 0
	for _, s := range []string{token, file, env} {
		if s != "" {
			given++
		}
	}
	switch {
	case given > 1:
		return "", errors.New("give one of --token, --token-file and --token-env, not several")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(data))
		if token == "" {
			return "", fmt.Errorf("--token-file: %s is empty", file)
		}
		return token, nil
	case env != "":
		value, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("--token-env: the environment variable %s is not set", env)
		}
		if token = strings.TrimSpace(value); token == "" {
			return "", fmt.Errorf("--token-env: the environment variable %s is empty", env)
		}
		return token, nil
	case token != "":
		return token, nil
	default:
		return "", errors.New("a token is required: --token TOKEN or --token-file FILE (or --token-env VARIABLE)")
	}
}

// parseFlags parses a command's flags. When the command must not go on, it
// returns false and the exit status: 0 after --help (printed on stdout),
// 2 after a usage error, which it prints in one line with the way to the
// help.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	usage := fs.Usage
	fs.Usage = func() {} // the flag package's own messages are replaced below
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return 0, false
	case err != nil:
		fmt.Fprintf(stderr, "%s: %s (run '%s --help' for the flags)\n", fs.Name(), flagError(err), fs.Name())
		return 2, false
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q: every value follows its flag, e.g. --upstream VALUE (run '%s --help')\n", fs.Name(), fs.Arg(0), fs.Name())
		return 2, false
	}
	return 0, true
}

// flagError words the flag package's errors with the double dash the help
// shows.
func flagError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag --" + name
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return "flag --" + name + " needs a value"
	}
	return msg
}
