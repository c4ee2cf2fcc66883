// Package version reports the version and commit of the running binary from
// its Go build information.
package version

import (
	"runtime/debug"
	"strings"
	"sync"
)

// ModulePath is this project's Go module path.
const ModulePath = "github.com/caddy-inlets/caddy-inlets"

var read = sync.OnceValues(func() (version, sha string) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev", "unknown"
	}
	return fromBuildInfo(info)
})

// fromBuildInfo finds this module's version and commit in a binary's
// build information: the main module's when this is it, else its
// dependency entry's (a binary built with xcaddy, whose own commit is
// not ours).
func fromBuildInfo(info *debug.BuildInfo) (version, sha string) {
	version, sha = "dev", "unknown"
	mod := &info.Main
	if mod.Path != ModulePath {
		// Built into another binary (xcaddy): use our dependency entry.
		for _, dep := range info.Deps {
			if dep.Path == ModulePath {
				mod = dep
				if dep.Replace != nil {
					// A directory replacement (xcaddy --with ...=./dir)
					// has no version of its own.
					mod = dep.Replace
				}
				break
			}
		}
	}
	if mod.Version != "" && mod.Version != "(devel)" {
		version = mod.Version
		// A pseudo-version ends in the commit: v0.0.0-20260101000000-abcdef123456.
		if i := strings.LastIndexByte(version, '-'); i > 0 && len(version)-i-1 == 12 {
			sha = version[i+1:]
		}
	}
	// The VCS stamp is the main module's: ours only when we are it.
	if info.Main.Path == ModulePath {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				sha = s.Value
			}
		}
	}
	return
}

// Version is the module version of caddy-inlets in this binary, or "dev".
func Version() string { v, _ := read(); return v }

// SHA is the commit caddy-inlets was built from, or "unknown".
func SHA() string { _, s := read(); return s }
