package inlets

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-l4/modules/l4tls"
)

var update = flag.Bool("update", false, "rewrite the JSON of testdata/caddyfile_adapt fixtures from the adapter's output")

// TestCaddyfileAdapt pins the Caddyfile → JSON mapping. Each fixture in
// testdata/caddyfile_adapt is a Caddyfile, a line of ----------, then either
// the expected JSON or, for a Caddyfile that must not adapt, a substring of
// the expected error.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s has no ---------- separator", file)
			}
			caddyfile = strings.TrimSpace(caddyfile) + "\n"
			expected = strings.TrimSpace(expected)

			if !strings.HasPrefix(expected, "{") {
				// The mistake is caught by the adapter or, for a value
				// the modules check, when the config loads: as `caddy
				// validate` and `caddy run` find it.
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
				if err == nil {
					var cfg caddy.Config
					if err = json.Unmarshal(out, &cfg); err == nil {
						err = caddy.Validate(&cfg)
					}
				}
				if err == nil || !strings.Contains(err.Error(), expected) {
					t.Fatalf("want an error containing %q, got %v", expected, err)
				}
				return
			}
			if *update {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				json.Indent(&pretty, out, "", "\t")
				os.WriteFile(file, []byte(caddyfile+"----------\n"+pretty.String()+"\n"), 0o644)
				return
			}
			if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
				t.Errorf("adapting %s does not give its JSON (run with -update after checking the change is intended)", file)
			}
		})
	}
}
