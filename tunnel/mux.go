package tunnel

import (
	"io"
	"log"
	"net"
	"time"

	"github.com/hashicorp/yamux"
)

// MuxConfig returns the yamux settings both sides use. Logger receives
// yamux's own log lines; nil discards them.
//
// yamux's defaults are not used as they are:
//   - MaxStreamWindowSize is MaxStreamWindowSize, not 256 KiB, so one
//     stream can fill a fast link.
//   - ConnectionWriteTimeout is a safety valve, not a liveness check: a
//     healthy but slow link must not trip it (yamux advisory
//     GHSA-29qp-crvh-w22m). Nothing here retries a stream write that timed
//     out: the copier that sees the error closes the stream.
//   - The client pings every KeepAliveInterval, which tells it when the
//     server is gone. The server does not ping: its Conn ends a session
//     that has sent nothing for PeerSilenceTimeout, which saves the server
//     a goroutine and a timer per idle client.
//   - StreamCloseTimeout bounds a half-closed stream whose peer never
//     closes its side; it runs from the half-close, not from the last
//     byte, so it must outlast any one-way transfer after a half-close
//     (a request sent with shutdown(SHUT_WR), then a long reply). yamux's
//     5 minutes would cut those; an hour matches the TCP idle timeout.
func MuxConfig(logger yamux.Logger) *yamux.Config {
	cfg := &yamux.Config{
		AcceptBacklog:          256,
		EnableKeepAlive:        true,
		KeepAliveInterval:      KeepAliveInterval,
		ConnectionWriteTimeout: ConnectionWriteTimeout,
		MaxStreamWindowSize:    MaxStreamWindowSize,
		StreamOpenTimeout:      30 * time.Second,
		StreamCloseTimeout:     time.Hour,
		Logger:                 logger,
	}
	if logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	return cfg
}

// ServerSession starts the server's side of a session over conn. The server
// opens every stream (it is yamux's "client" role) and leaves pinging to
// the client.
func ServerSession(conn *Conn, logger yamux.Logger) (*yamux.Session, error) {
	conn.SetIdleTimeout(PeerSilenceTimeout)
	cfg := MuxConfig(logger)
	cfg.EnableKeepAlive = false
	return yamux.Client(conn, cfg)
}

// ClientSession starts the client's side of a session over conn: it accepts
// the streams the server opens.
func ClientSession(conn net.Conn, logger yamux.Logger) (*yamux.Session, error) {
	return yamux.Server(conn, MuxConfig(logger))
}
