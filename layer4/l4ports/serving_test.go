package l4ports

import (
	"errors"
	"strings"
	"testing"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
)

func TestTheLatestPlaneServesAndAFailedReloadHandsBack(t *testing.T) {
	if err := OpenPorts(&registry.Session{}); !errors.Is(err, errNoTCP) {
		t.Fatalf("with no data plane: %v", err)
	}
	old, next := new(Plane), new(Plane)
	t.Cleanup(func() { uninstall(old); uninstall(next) })
	install(old)
	install(next)
	if current() != next {
		t.Fatal("the plane of the config started last does not serve")
	}
	// The new config failed to start: Caddy stops its apps, the old runs on.
	if !uninstall(next) || current() != old {
		t.Fatal("the old config's plane does not serve again after the new one's stopped")
	}
	// A reload: the new one starts, then the old one stops.
	install(next)
	if !uninstall(old) || current() != next {
		t.Fatal("after a reload the new config's plane does not serve")
	}
	// The config loses its data plane.
	if uninstall(next) || current() != nil {
		t.Fatal("a plane reported remaining after the last was removed")
	}
}

// A session that picked a plane as it stopped asks again, a bounded
// number of times, and gets the plane serving once the stopped one is
// gone.
func TestOpenPortsAsksAgainWhenThePlaneItPickedHasStopped(t *testing.T) {
	serves, stopped := new(Plane), &Plane{stopped: true}
	t.Cleanup(func() { uninstall(serves); uninstall(stopped) })
	install(serves)
	install(stopped) // stopped, not yet uninstalled: the race of a reload
	if err := OpenPorts(&registry.Session{}); err == nil || !strings.Contains(err.Error(), "kept changing") {
		t.Fatalf("with a stopped plane serving: %v", err)
	}
	uninstall(stopped)
	if err := OpenPorts(&registry.Session{}); err != nil {
		t.Fatalf("with the stopped plane gone: %v", err)
	}
}
