package cli

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fileErrorLine is a line of a config file's error: FILE:LINE: or FILE:
// (the whole file), then a message.
var fileErrorLine = regexp.MustCompile(`^F(?::(\d+))?: \S`)

// FuzzClientFile parses a config file (see clientfile.go). It must not
// panic; every line of its error names the file, and a line of it where
// there is one; a file it accepts has a client config for a mode it has
// tunnels of, each with a server and a token, that client.New takes.
// Relative paths in the file are relative to this package's directory.
func FuzzClientFile(f *testing.F) {
	f.Add([]byte(goodClientFile))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := parseClientFile("F", data)
		if err != nil {
			// YAML's line breaks: LF, CR LF, a CR alone, NEL, LS and PS.
			text := strings.ReplaceAll(string(data), "\r\n", "\n")
			lines := 2
			for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
				lines += strings.Count(text, br)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				m := fileErrorLine.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("an error line without FILE:LINE: %q\nof\n%s", line, err)
				}
				if n, _ := strconv.Atoi(m[1]); m[1] != "" && (n < 1 || n > lines) {
					t.Fatalf("an error at line %d of a file of %d: %q", n, lines, line)
				}
			}
			return
		}
		if len(cf.configs) == 0 || cf.servers < 1 {
			t.Fatalf("accepted without tunnels or servers: %+v", cf)
		}
		for mode, cfg := range cf.configs {
			if cfg.URL == "" || cfg.Token == "" || len(tunnelCounts(cfg)) == 0 {
				t.Fatalf("accepted a %s config without a server, a token or tunnels: %+v", mode, cfg)
			}
			if err := validateConfig(*cfg); err != nil {
				t.Fatalf("accepted a %s config client.New refuses: %v", mode, err)
			}
			if changes := configChanges(cfg, cfg); len(changes) > 0 {
				t.Fatalf("a %s config differs from itself: %q", mode, changes)
			}
		}
		_ = cf.summary()
	})
}
