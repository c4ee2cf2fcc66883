package inlets

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// registered lists the IDs of the modules this package registers: those
// whose ID names inlets.
func registered() []string {
	var ids []string
	for _, id := range caddy.Modules() {
		if slices.Contains(strings.Split(id, "."), "inlets") || strings.HasPrefix(id, "inlets_") {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// One list of modules: what a `--with` of this package registers is what
// xcaddy.md says `caddy list-modules | grep inlets` shows, and what the
// package's documentation lists.
func TestEveryModuleIsListedWhereUsersLook(t *testing.T) {
	got := registered()
	if len(got) < 8 {
		t.Fatalf("only %d modules registered: %v", len(got), got)
	}
	xcaddy, err := os.ReadFile("xcaddy.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)should list:\n\n```\n(.*?)```").FindSubmatch(xcaddy)
	if block == nil {
		t.Fatal("xcaddy.md has no \"should list:\" block")
	}
	if listed := strings.Fields(string(block[1])); !slices.Equal(listed, got) {
		t.Errorf("xcaddy.md lists %v; the binary has %v", listed, got)
	}
	doc, err := os.ReadFile("module.go")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile(`(?m)^//\t(\S+)\s`).FindAllSubmatch(doc, -1) {
		documented = append(documented, string(m[1]))
	}
	slices.Sort(documented)
	if !slices.Equal(documented, got) {
		t.Errorf("module.go's documentation lists %v; the binary has %v", documented, got)
	}
}
