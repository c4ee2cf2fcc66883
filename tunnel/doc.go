// Package tunnel is the wire protocol shared by the caddy-inlets server (the
// http.handlers.inlets module inside Caddy) and the inlets client. This
// comment is its specification: another implementation can be written from it.
//
// # Transport
//
// The client opens one WebSocket per session:
//
//	GET /connect HTTP/1.1
//	Authorization: Bearer <token>
//	X-Inlets-Mode: http
//	Upgrade: websocket
//
// The server answers 401 with a plain-text reason when the token is missing or
// wrong, and 101 when it accepts the upgrade. X-Inlets-Mode ([ModeHeader],
// "http" or "tcp") is the mode the client will announce in its Hello; the
// server only uses it to count the request in the control-plane metrics of
// that mode (a request without it, or with another value, counts as "http"),
// since it counts the request before it knows whether the token is right. HTTP/1.1 is required (no h2
// extended CONNECT). Every WebSocket message is binary; message boundaries
// carry no meaning: the messages, read in order, form one byte stream. A
// writer splits its data into messages of at most [MaxMessageSize] bytes and
// a reader refuses larger ones. Compression is off.
//
// That byte stream carries one yamux session (github.com/hashicorp/yamux,
// spec.md of that repository). The server is the yamux client and opens
// every stream; the client never opens one. Once it has read the client's
// Hello the server sends a yamux Go Away (normal termination), after which
// yamux resets any stream the client opens, and rejects the client if it
// opened one before. The client
// sends a yamux ping every [KeepAliveInterval] and ends the session when one
// goes unanswered; the server does not ping, and ends a session from which
// no message has arrived for [PeerSilenceTimeout].
//
// # Messages
//
// Control messages and stream headers share one framing: a 4-byte big-endian
// length followed by that many bytes of a JSON object. Each kind of frame has
// its own size limit ([MaxHandshakeSize], [MaxStreamHeaderSize]); a reader
// refuses a frame larger than its limit without reading it.
//
// # Handshake
//
// The first stream the server opens is the control stream. On it:
//
//  1. the client writes a [Hello]: its ID, its version, the protocol version,
//     its mode ("http" or "tcp") and the upstreams it announces;
//  2. the server answers with a [Message] of type "accept" or "reject". A
//     rejection carries a Reason meant for the operator, which the client
//     prints; the server then closes the session.
//
// The server gives up on a client that has not sent its Hello within
// [HandshakeTimeout]. After "accept" the control stream stays open for the
// life of the session, and the server may send further messages on it;
// none comes before "accept". When the control stream or the session ends,
// the session is over.
//
// A "withdraw" message lists in Ports announced TCP ports the server has
// stopped listening on, with a Reason for the operator: typically a
// reloaded server configuration no longer allows them. The session stays
// up, with its other ports, and the client needs to do nothing but report
// it; the server does not repeat it while the ports stay withdrawn. If the
// server's configuration allows the ports again, it listens on them again
// without a message. A port the server refuses when the client connects
// is not withdrawn: the whole announcement is rejected instead.
//
// # Data streams
//
// Every later stream carries one visitor connection. The server opens it and
// writes a [StreamHeader] before any data:
//
//   - Kind "http": Host is the announced host pattern the visitor's request
//     matched (for example "app.example.com", "*.example.com" or "*"). The
//     rest of the stream is HTTP/1.1 as the server's reverse proxy speaks
//     it, possibly several requests on one kept-alive stream. The client
//     relays it to that host's upstream URL.
//   - Kind "tcp": Port is the public port the visitor connected to;
//     RemoteAddr and LocalAddr are the visitor's and the server's addresses,
//     and ProxyProtocol ("", "v1" or "v2") asks the client to write a PROXY
//     protocol header carrying them to the upstream before any other byte.
//     The rest of the stream is the raw TCP byte stream.
//
// Closing a stream's write side (yamux FIN) is a half-close: it is relayed to
// the far end as end-of-file while the other direction keeps flowing.
//
// # Status and metrics
//
// The control plane also answers GET [StatusPath] with the server's status
// as JSON (the shape of inlets-pro's: "info" and "clients") and GET
// [MetricsPath] with its Prometheus metrics, both with the same bearer token
// as /connect and 401 without it.
package tunnel
