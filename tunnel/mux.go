package tunnel

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/yamux"
)

// Config is what one side chooses for its sessions: the server for every
// client's, a client for its own. The zero value of each field is its
// default; DefaultConfig spells them out.
type Config struct {
	// MaxStreamWindow is the largest receive window a stream grows to.
	// Every stream starts at yamux's MinStreamWindow (256 KiB); each time
	// its reader has taken the window within four round trips, the
	// window doubles, up to this. A stream whose reader stalls never
	// grows. The reader grants more credit each time it has taken half its
	// window, so a stream limited by its window moves about half of it per
	// round trip: 32 MiB is 335 MB/s at 50 ms, 84 MB/s at 200 ms. Default
	// DefaultMaxStreamWindow; from MinStreamWindow to MaxStreamWindowLimit.
	MaxStreamWindow uint32

	// Budget, if set, bounds what the streams of every session sharing it
	// hold unread: see Budget. Without one nothing bounds the sum.
	Budget *Budget

	// MeasureRTTInterval is how often the session pings its peer to
	// measure the round-trip time, which window growth and status use;
	// it is also measured once as the session starts. Default
	// DefaultMeasureRTTInterval.
	MeasureRTTInterval time.Duration

	// ProbeAfter and AnswerTimeout bound, on the server's side, how long a
	// client that stops answering keeps its session: the server pings a
	// client from which it has heard nothing for ProbeAfter since it sent
	// it data or a new stream, and ends the session when nothing more has
	// come AnswerTimeout later. Defaults: DefaultProbeAfter and
	// DefaultAnswerTimeout. A client ignores them.
	ProbeAfter, AnswerTimeout time.Duration

	// LogOutput receives yamux's log lines; nil discards them.
	LogOutput io.Writer
}

// Window sizes.
const (
	// MinStreamWindow is yamux's initial stream window, which a peer may
	// fill before any window update: every stream's receive window
	// starts there, and a stalled reader's stays there.
	MinStreamWindow = 256 << 10

	// DefaultMaxStreamWindow is Config.MaxStreamWindow's default: twice
	// what libp2p's yamux and grpc-go allow (16 MiB), since a window moves
	// about half itself per round trip (measured, bench/ scenario 12: one
	// download at RTT 200 ms went at 39 MB/s with 16 MiB).
	DefaultMaxStreamWindow = 32 << 20

	// MaxStreamWindowLimit is the largest Config.MaxStreamWindow.
	MaxStreamWindowLimit = 64 << 20
)

// DefaultMeasureRTTInterval is Config.MeasureRTTInterval's default.
const DefaultMeasureRTTInterval = 30 * time.Second

// DefaultConfig is the configuration of the zero Config.
func DefaultConfig() Config {
	return Config{
		MaxStreamWindow:    DefaultMaxStreamWindow,
		MeasureRTTInterval: DefaultMeasureRTTInterval,
		ProbeAfter:         DefaultProbeAfter,
		AnswerTimeout:      DefaultAnswerTimeout,
	}
}

// withDefaults fills in the fields left zero.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxStreamWindow == 0 {
		c.MaxStreamWindow = d.MaxStreamWindow
	}
	if c.MeasureRTTInterval == 0 {
		c.MeasureRTTInterval = d.MeasureRTTInterval
	}
	if c.ProbeAfter == 0 {
		c.ProbeAfter = d.ProbeAfter
	}
	if c.AnswerTimeout == 0 {
		c.AnswerTimeout = d.AnswerTimeout
	}
	return c
}

// VerifyConfig checks cfg, its zero fields taken as their defaults.
func VerifyConfig(cfg Config) error {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.MaxStreamWindow < MinStreamWindow || cfg.MaxStreamWindow > MaxStreamWindowLimit {
		errs = append(errs, fmt.Errorf("the largest stream window, %d bytes, must be from %d (256 KiB) to %d (64 MiB)",
			cfg.MaxStreamWindow, MinStreamWindow, MaxStreamWindowLimit))
	}
	if cfg.MeasureRTTInterval < 0 || cfg.ProbeAfter < 0 || cfg.AnswerTimeout < 0 {
		errs = append(errs, errors.New("durations may not be negative"))
	}
	return errors.Join(errs...)
}

// muxConfig is the yamux configuration of a side.
//
// yamux's defaults are not used as they are:
//   - AcceptBacklog, which also bounds the streams the server has opened
//     and the client not yet acknowledged, is 1024: with fewer, a server
//     opening streams for a burst of visitors on a long link waits a
//     round trip for acknowledgements (256 at 200 ms is 1,280 streams a
//     second).
//   - ConnectionWriteTimeout is a safety valve, not a liveness check: a
//     healthy but slow link must not trip it (yamux advisory
//     GHSA-29qp-crvh-w22m). Nothing here retries a stream write that timed
//     out: the copier that sees the error resets the stream.
//   - The client pings every KeepAliveInterval when it has heard nothing,
//     which tells it when the server is gone. The server does not: its
//     Conn ends a session that has sent nothing for PeerSilenceTimeout,
//     and its watchdog one that leaves work unanswered (see Config).
//   - No read buffer: gorilla's reader buffers the WebSocket already.
//   - Messages of up to 64 KiB, one WebSocket message each.
func muxConfig(cfg Config, client bool) *yamux.Config {
	mc := &yamux.Config{
		AcceptBacklog:           1024,
		PingBacklog:             32,
		EnableKeepAlive:         client,
		KeepAliveInterval:       KeepAliveInterval,
		MeasureRTTInterval:      cfg.MeasureRTTInterval,
		ConnectionWriteTimeout:  ConnectionWriteTimeout,
		MaxIncomingStreams:      1<<32 - 1,
		InitialStreamWindowSize: MinStreamWindow,
		MaxStreamWindowSize:     cfg.MaxStreamWindow,
		LogOutput:               cfg.LogOutput,
		ReadBufSize:             0,
		MaxMessageSize:          64 << 10,
	}
	if mc.LogOutput == nil {
		mc.LogOutput = io.Discard
	}
	return mc
}
