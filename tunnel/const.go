package tunnel

import "time"

// Protocol versions this package speaks: the server accepts a Hello whose
// range [MinProtocol, Protocol] includes one of them, and answers with the
// newest in both ranges. Version 1 (no stream replies) is no longer spoken;
// a version 1 client is rejected with RejectProtocol. A version 2 session
// is served as version 2 asks: the server sends a visitor's bytes only
// once the client has replied.
const (
	ProtocolVersion    = 3
	MinProtocolVersion = 2
)

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
	KindUDP  = "udp"
	KindTLS  = "tls"
)

// Control message types, in Message.Type.
const (
	TypeAccept   = "accept"
	TypeReject   = "reject"
	TypeWithdraw = "withdraw"
	TypeShutdown = "shutdown"
	TypePeers    = "peers"
)

// Rejection codes, in Message.Code, each with the Retry the server sends
// with it.
const (
	// RejectBadHello: the Hello is malformed or breaks a rule of its
	// fields (RetryNever).
	RejectBadHello = "bad-hello"
	// RejectProtocol: no protocol version in common (RetryNever).
	RejectProtocol = "protocol-version"
	// RejectHostNotAllowed and RejectPortNotAllowed: an announced host or
	// port is outside what the server allows this client (RetryNever).
	RejectHostNotAllowed = "host-not-allowed"
	RejectPortNotAllowed = "port-not-allowed"
	// RejectNoTCP: the server has no TCP data plane (RetryNever).
	RejectNoTCP = "no-tcp"
	// RejectTooLarge: the announcement has more hosts or ports than the
	// server takes from one client (RetryNever).
	RejectTooLarge = "announcement-too-large"
	// RejectServerFull: the server has as many clients as it takes
	// (RetryLater).
	RejectServerFull = "server-full"
	// RejectPortUnavailable: an allowed port cannot be opened now, for
	// example because another program holds it (RetryLater).
	RejectPortUnavailable = "port-unavailable"
	// RejectTokenRefused: the token the client authenticated with is no
	// longer accepted (its tunnel was deleted, or the token replaced or
	// expired) by the time the server would admit it (RetryNever).
	RejectTokenRefused = "token-refused"
	// RejectShuttingDown: the server is stopping or reloading; its
	// successor takes clients at once (RetryNow).
	RejectShuttingDown = "shutting-down"
)

// Retry classes, in Message.Retry: what a rejected client should do.
const (
	// RetryNow: connect again at once, with the shortest backoff.
	RetryNow = "now"
	// RetryLater: the condition may pass; back off as after a failure.
	RetryLater = "later"
	// RetryNever: connecting again cannot help until an operator changes
	// the client or the server; wait the longest backoff between tries.
	RetryNever = "never"
)

// Stream reply errors, in StreamReply.Error.
const (
	// StreamUpstreamUnreachable: the client could not connect to the
	// stream's upstream. The server may try another client.
	StreamUpstreamUnreachable = "upstream-unreachable"
	// StreamUnknownTarget: the client serves no such host or port.
	StreamUnknownTarget = "unknown-target"
	// StreamUnknownKind: the client does not know the stream's kind.
	StreamUnknownKind = "unknown-kind"
)

// Limits and timeouts of the protocol.
const (
	// MaxMessageSize is the largest WebSocket message either side writes or
	// accepts.
	MaxMessageSize = 256 << 10

	// MaxHandshakeSize bounds a Hello and every control message.
	MaxHandshakeSize = 64 << 10

	// MaxStreamHeaderSize bounds a StreamHeader and a StreamReply.
	MaxStreamHeaderSize = 4 << 10

	// MaxClientIDLen bounds Hello.ClientID.
	MaxClientIDLen = 128

	// MaxReasonLen bounds a Reason: what a reader takes of a longer one
	// is its first MaxReasonLen bytes.
	MaxReasonLen = 1024

	// StreamReplyTimeout is how long the server waits for a client's
	// StreamReply: longer than a client's own wait for its upstream.
	StreamReplyTimeout = 15 * time.Second

	// HandshakeTimeout is how long a server waits for a client's Hello, and
	// a client for the server's answer.
	HandshakeTimeout = 10 * time.Second

	// KeepAliveInterval is how often the client pings the server; a
	// session whose server stops answering is closed after
	// ConnectionWriteTimeout.
	KeepAliveInterval = 5 * time.Second

	// PeerSilenceTimeout is how long the server waits for any message from
	// a client (at the least its pings) before it ends the session.
	PeerSilenceTimeout = 3 * KeepAliveInterval

	// ConnectionWriteTimeout bounds how long a stream's write waits for
	// the session to take its frame, and each write on the control stream.
	ConnectionWriteTimeout = 10 * time.Second

	// DefaultProbeAfter and DefaultAnswerTimeout are the server's defaults
	// for Config.ProbeAfter and AnswerTimeout: a client that stops
	// answering while it has work is dropped within 2s.
	DefaultProbeAfter    = 800 * time.Millisecond
	DefaultAnswerTimeout = 1200 * time.Millisecond
)
