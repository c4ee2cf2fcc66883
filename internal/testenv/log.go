package testenv

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// tLogger logs through t while the test runs, and nowhere after it ends
// (a client's goroutines may outlive the test by a moment).
func tLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// CaptureLogger is a logger whose lines the returned function gives back.
func CaptureLogger() (*slog.Logger, func() string) {
	w := new(syncBuffer)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w.String
}
