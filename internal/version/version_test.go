package version

import (
	"runtime/debug"
	"testing"
)

func TestVersionAndSHAComeFromThisModulesEntry(t *testing.T) {
	stamp := []debug.BuildSetting{{Key: "vcs.revision", Value: "1111111111111111111111111111111111111111"}}
	for name, tt := range map[string]struct {
		info         debug.BuildInfo
		version, sha string
	}{
		"our own binary, from a checkout": {debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"}, Settings: stamp},
			"dev", "1111111111111111111111111111111111111111"},
		"built into another binary at a release": {debug.BuildInfo{
			Main:     debug.Module{Path: "example.com/my-caddy", Version: "(devel)"},
			Deps:     []*debug.Module{{Path: ModulePath, Version: "v1.2.3"}},
			Settings: stamp}, // the other binary's commit, not ours
			"v1.2.3", "unknown"},
		"built into another binary at a commit": {debug.BuildInfo{
			Main:     debug.Module{Path: "example.com/my-caddy"},
			Deps:     []*debug.Module{{Path: ModulePath, Version: "v0.0.0-20261201000000-abcdef123456"}},
			Settings: stamp},
			"v0.0.0-20261201000000-abcdef123456", "abcdef123456"},
		"replaced by a directory": {debug.BuildInfo{
			Main: debug.Module{Path: "example.com/my-caddy"},
			Deps: []*debug.Module{{Path: ModulePath, Version: "v1.0.0", Replace: &debug.Module{Path: "../caddy-inlets"}}}},
			"dev", "unknown"},
	} {
		if v, s := fromBuildInfo(&tt.info); v != tt.version || s != tt.sha {
			t.Errorf("%s: %s (%s), want %s (%s)", name, v, s, tt.version, tt.sha)
		}
	}
}
