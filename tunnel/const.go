package tunnel

import "time"

// ProtocolVersion is the version of this protocol. A server rejects a Hello
// whose Protocol it does not speak.
const ProtocolVersion = 1

// ConnectPath is the control-plane path clients connect to when their URL has
// no path of its own.
const ConnectPath = "/connect"

// Control-plane paths other than ConnectPath: both answer GET with the
// server's bearer token.
const (
	// StatusPath serves the server's status as JSON.
	StatusPath = "/status"
	// MetricsPath serves the server's Prometheus metrics.
	MetricsPath = "/metrics"
)

// Modes a client may announce in its Hello.
const (
	ModeHTTP = "http"
	ModeTCP  = "tcp"
)

// ModeHeader is the request header in which a client names its mode
// (ModeHTTP or ModeTCP) when it connects. The server reads it before the
// token is checked, and only to count the request under its mode's
// control-plane metrics; the Hello's Mode is what decides the session.
const ModeHeader = "X-Inlets-Mode"

// Stream kinds, in StreamHeader.Kind.
const (
	KindHTTP = "http"
	KindTCP  = "tcp"
)

// Control message types, in Message.Type.
const (
	TypeAccept   = "accept"
	TypeReject   = "reject"
	TypeWithdraw = "withdraw"
)

// Limits and timeouts of the protocol.
const (
	// MaxMessageSize is the largest WebSocket message either side writes or
	// accepts.
	MaxMessageSize = 256 << 10

	// MaxHandshakeSize bounds a Hello and every control message.
	MaxHandshakeSize = 64 << 10

	// MaxStreamHeaderSize bounds a StreamHeader.
	MaxStreamHeaderSize = 4 << 10

	// HandshakeTimeout is how long a server waits for a client's Hello, and
	// a client for the server's answer.
	HandshakeTimeout = 10 * time.Second

	// KeepAliveInterval is how often the client pings the server; a
	// session whose server stops answering is closed after
	// ConnectionWriteTimeout.
	KeepAliveInterval = 15 * time.Second

	// PeerSilenceTimeout is how long the server waits for any message from
	// a client (at the least its pings) before it ends the session.
	PeerSilenceTimeout = 3 * KeepAliveInterval

	// ConnectionWriteTimeout bounds how long a stream's write waits for
	// the session to take its frame, and each write on the control stream.
	ConnectionWriteTimeout = 10 * time.Second

	// MaxStreamWindowSize is the per-stream receive window. yamux's 256 KiB
	// default caps a stream at 256 KiB per round trip; a few MiB lets one
	// stream fill a fast link while memory is only used when a reader lags.
	MaxStreamWindowSize = 4 << 20
)
