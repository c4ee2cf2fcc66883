package handler

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
)

func TestTokensFromLiteralsPlaceholdersAndFiles(t *testing.T) {
	t.Setenv("INLETS_TEST_TOKEN", "from-env")
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("  from-file\n"), 0o600)
	placeholderFile := filepath.Join(dir, "placeholder")
	os.WriteFile(placeholderFile, []byte("from-placeholder-file\n"), 0o600)

	// The digest of "from-digest".
	set, err := loadTokens([]string{"literal", "{env.INLETS_TEST_TOKEN}", "{file." + placeholderFile + "}"}, []string{file},
		[]string{sha256Hex("from-digest")})
	if err != nil {
		t.Fatal(err)
	}
	// The handler's own tokens are the default tunnel's, which the
	// registry's tenancy knows.
	ten, err := registry.CompileTunnels(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ten.AddDefaultTokens(set, registry.HostAllow{}); err != nil {
		t.Fatal(err)
	}
	reg := registry.New()
	reg.SetTenancy(ten)
	for _, tt := range []struct {
		header string
		ok     bool
	}{
		{"Bearer literal", true},
		{"Bearer from-env", true},
		{"Bearer from-file", true},
		{"Bearer from-placeholder-file", true},
		{"Bearer from-digest", true},
		{"Bearer {env.INLETS_TEST_TOKEN}", false},
		{"Bearer literal ", false},
		{"Bearer ", false},
		{"bearer literal", false},
		{"literal", false},
		{"", false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/connect", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		h := &Handler{tokens: set, reg: reg}
		if _, got := h.authenticate(r); got != tt.ok {
			t.Errorf("Authorization %q: authorized %v, want %v", tt.header, got, tt.ok)
		}
	}
}

func TestBadTokensAreReportedClearly(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for name, tt := range map[string]struct {
		tokens, files, digests []string
		want                   string
	}{
		"unset env":       {tokens: []string{"{env.INLETS_TEST_SURELY_UNSET}"}, want: "token 1:"},
		"blank":           {tokens: []string{"  "}, want: "token 1 is empty"},
		"missing file":    {files: []string{"/nonexistent/token"}, want: "reading token file"},
		"empty file":      {files: []string{empty}, want: "is empty"},
		"token as digest": {digests: []string{"s3cret-token"}, want: "token_sha256 1 is not a SHA-256 digest in hex (64 characters; this has 12)"},
	} {
		_, err := loadTokens(tt.tokens, tt.files, tt.digests)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tt.want)
		}
	}
}

func TestAllowHosts(t *testing.T) {
	allow, err := hostAllower([]string{"app.example.com", "*.lab.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"app.example.com":     true,
		"api.example.com":     false,
		"a.lab.example.org":   true,
		"a.b.lab.example.org": true,
		"*.lab.example.org":   true,
		"lab.example.org":     false,
		"evillab.example.org": false,
		"*":                   false,
		"*.example.com":       false,
	} {
		if got := allow(host); got != want {
			t.Errorf("allow(%q) = %v, want %v", host, got, want)
		}
	}
	if all, _ := hostAllower([]string{"*"}); !all("*") || !all("x.y") {
		t.Error(`"*" should allow everything`)
	}
	if none, _ := hostAllower(nil); none != nil {
		t.Error("an empty list should allow everything (nil func)")
	}
	if _, err := hostAllower([]string{"Bad Host"}); err == nil {
		t.Error("invalid pattern accepted")
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
