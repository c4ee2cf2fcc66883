package testenv

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"
)

// Resources are this process's goroutines and open file descriptors: what
// a leak check compares before and after.
type Resources struct{ Goroutines, FDs int }

func countResources(t testing.TB) Resources {
	// The tests' own kept-alive connections (metrics scrapes, status
	// requests through http.DefaultClient) are not what a check is
	// after: whether one is idle in the pool depends on timing.
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return Resources{Goroutines: runtime.NumGoroutine(), FDs: len(entries)}
}

// SettledResources waits until the counts stop changing and returns them:
// the baseline of a leak check, taken after a warm-up that has started the
// long-lived goroutines of Caddy and the runtime.
func SettledResources(t testing.TB) Resources {
	t.Helper()
	var base Resources
	Eventually(t, 5*time.Second, func() error {
		now := countResources(t)
		if now != base {
			base = now
			return fmt.Errorf("still settling: %+v", now)
		}
		return nil
	})
	return base
}

// ResourcesBackTo waits until the counts are at most base again; what
// says what has ended, for the failure message.
func ResourcesBackTo(t testing.TB, base Resources, what string) {
	t.Helper()
	Eventually(t, 10*time.Second, func() error {
		if now := countResources(t); now.Goroutines > base.Goroutines || now.FDs > base.FDs {
			return fmt.Errorf("after %s: %d goroutines (baseline %d), %d fds (baseline %d)", what, now.Goroutines, base.Goroutines, now.FDs, base.FDs)
		}
		return nil
	})
}
