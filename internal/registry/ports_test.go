package registry

import (
	"errors"
	"testing"
)

// opener is a PortOpener that records the sessions it is asked about.
type opener struct {
	name    string
	stopped bool
	asked   int
}

func (o *opener) OpenPorts(*Session) error {
	o.asked++
	if o.stopped {
		return ErrOpenerStopped
	}
	return nil
}

func TestTheLatestPortOpenerServesAndAFailedReloadHandsBack(t *testing.T) {
	r := New()
	s := &Session{}
	if err := r.openPorts(s); !errors.Is(err, errNoTCP) {
		t.Fatalf("with no TCP app: %v", err)
	}

	old, next := &opener{name: "old"}, &opener{name: "new"}
	r.SetPortOpener(old)
	r.SetPortOpener(next)
	if r.portOpener() != next {
		t.Fatal("the config started last does not serve")
	}

	// The new config failed to start: Caddy stops its apps, the old runs on.
	if !r.ClearPortOpener(next) {
		t.Fatal("no opener reported remaining after the new config's stopped")
	}
	if r.portOpener() != old {
		t.Fatal("the old config's opener does not serve again")
	}

	// A reload: the new one starts, then the old one stops.
	r.SetPortOpener(next)
	if !r.ClearPortOpener(old) || r.portOpener() != next {
		t.Fatal("after a reload the new config's opener does not serve")
	}
	// The config loses its TCP app.
	if r.ClearPortOpener(next) {
		t.Fatal("an opener reported remaining after the last was cleared")
	}
}

func TestOpenPortsAsksTheCurrentOpenerWhenAStoppedOneAnswers(t *testing.T) {
	r := New()
	current := &opener{name: "new"}
	r.SetPortOpener(current)
	// A session picked the old config's opener just before it stopped: it
	// uninstalls itself, then refuses.
	stopping := &clearingOpener{opener: &opener{name: "old", stopped: true}}
	stopping.clear = func() { r.ClearPortOpener(stopping) }
	r.SetPortOpener(stopping)

	if err := r.openPorts(&Session{}); err != nil {
		t.Fatal(err)
	}
	if stopping.asked != 1 || current.asked != 1 {
		t.Fatalf("stopped opener asked %d times, current one %d times; want 1 and 1", stopping.asked, current.asked)
	}
}

// clearingOpener is a stopped opener that uninstalls itself when asked, as
// a stopping App does before it refuses.
type clearingOpener struct {
	*opener
	clear func()
}

func (c *clearingOpener) OpenPorts(s *Session) error {
	c.clear()
	return c.opener.OpenPorts(s)
}
