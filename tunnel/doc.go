// Package tunnel is the wire protocol shared by the caddy-inlets server (the
// http.handlers.inlets module inside Caddy) and the inlets client. This
// comment is its specification, version 3: another client can be written
// from it, with any WebSocket library and any yamux that follows yamux's
// spec.md (github.com/hashicorp/yamux's, which defines the framing). This
// package uses libp2p's go-yamux (v5.1.0, with a fix to its window
// updates: see internal/yamux), which speaks that spec on the wire; the
// tests connect a stock hashicorp/yamux client to the server.
//
// # Versions
//
//   - 1: no stream replies; no longer spoken.
//   - 2: a data stream's first bytes wait for the client's reply.
//   - 3: the server sends a visitor's first bytes right behind the stream
//     header, without waiting for the reply: a new connection costs one
//     round trip to the client, not two (see Data streams).
//
// # Conventions
//
// Every JSON object on the wire may gain fields in later versions: a
// reader ignores the fields it does not know. A control message of a type
// it does not know is ignored. A stream of a kind it does not know is
// answered with StreamUnknownKind. A rejection code it does not know is
// read as RetryLater; so is a missing or unknown retry class.
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
// The server answers:
//
//   - 101 when it accepts the upgrade;
//   - 401, with a plain-text reason, when the token is missing or wrong
//     (retrying cannot help until the token is changed);
//   - 429 with Retry-After (seconds) when the client's address has failed
//     to log in too often lately, or has too many handshakes in progress:
//     the token is not looked at; wait that long;
//   - 400 to a request that is not a WebSocket upgrade.
//
// Any other status means the URL is not an inlets control plane.
// X-Inlets-Mode ([ModeHeader], "http" or "tcp") is the mode the client will
// announce in its Hello; the server only uses it to count the request in
// the control-plane metrics of that mode (a request without it, or with
// another value, counts as "http"), since it counts the request before it
// knows whether the token is right. HTTP/1.1 is required (no h2 extended
// CONNECT).
//
// Every WebSocket data message is binary; message boundaries carry no
// meaning: the messages, read in order, form one byte stream. A writer
// splits its data into messages of at most [MaxMessageSize] bytes and a
// reader refuses larger ones. Compression is off. Both sides answer a
// WebSocket Ping with a Pong carrying its payload, and a Close with a Close,
// after which the session is over (RFC 6455, section 5.5): proxies and load
// balancers in front of the server rely on both.
//
// # Session
//
// That byte stream carries one yamux session (version 0). The server is
// the yamux client: it opens every stream, with odd IDs; the client never
// opens one. The server resets any stream a client opens, answers at most
// a backlog of its pings (32) at a time and drops the rest, and never
// reads its control stream after the Hello, so that a client sending more
// there holds at most the stream's first window.
//
// Each side's receive window on a stream starts at yamux's 256 KiB
// ([MinStreamWindow]); each side grows it, by window updates, as its
// reader keeps up: when the reader has taken the whole window within four
// round trips, the window doubles, up to the side's maximum
// ([Config].MaxStreamWindow, [DefaultMaxStreamWindow] by default). A
// stream whose reader stalls keeps its window. Either side may refuse to
// grow a window, to bound its memory, and may reset streams whose readers
// do not read (see [Budget]). Both sides ping (a yamux ping) when the
// session starts and every [DefaultMeasureRTTInterval] after, to measure
// the round-trip time that window growth uses. The client also sends a
// yamux ping when it has heard nothing from the server for
// [KeepAliveInterval], and ends the session when one goes unanswered for
// [ConnectionWriteTimeout]. The server ends a session from which nothing
// has arrived for [PeerSilenceTimeout]. When it has sent a client data or
// a new stream and heard nothing back for [DefaultProbeAfter], it pings,
// and it ends the session when nothing has come [DefaultAnswerTimeout]
// after that (the server's client_timeout, 2s by default, is the sum): a
// client must answer pings promptly, even while its upstream is slow.
// Neither side sends a yamux Go Away: some yamux implementations end the
// session on one. A version 2 server sends one after the hello; a client
// reads it as hashicorp/yamux does, as the end of the streams it may
// open (none), and keeps the session.
//
// A stream ends in one of two ways. A FIN (yamux's close) is a half-close:
// the peer reads end-of-file while the other direction keeps flowing, and
// the stream is over once both sides have sent one. An RST (a yamux window
// update with the RST flag; its length may carry an error code, which a
// reader may ignore) ends it at once in both directions: the receiver
// discards what it holds of the stream and stops writing to it. A side
// that closes a stream before its peer has sent FIN sends RST, not FIN, so
// that nothing is left buffered for a reader that is gone; both sides run
// no close timer. A side that ends the session first sends what it had
// written; what had arrived on a stream when its session ended is still
// read, before the stream's error.
//
// # Messages
//
// Control messages, stream headers and stream replies share one framing: a
// 4-byte big-endian length followed by that many bytes of a JSON object.
// Each kind of frame has its own size limit ([MaxHandshakeSize] for the
// Hello and control messages, [MaxStreamHeaderSize] for stream headers and
// replies); a reader refuses a frame larger than its limit without reading
// it. A reason, in any message, is at most [MaxReasonLen] bytes: a reader
// keeps only that much of a longer one.
//
// # Handshake
//
// The first stream the server opens (ID 1) is the control stream. On it:
//
//  1. the client writes a [Hello]: its ID (1 to [MaxClientIDLen] printable
//     ASCII characters, no space), its software version, the range of
//     protocol versions it speaks (MinProtocol to Protocol), its mode
//     ("http" or "tcp") and the upstreams it announces: host patterns (see
//     [ValidateHostPattern]) with the upstream URL of each (see
//     [ParseUpstreamURL]); or, in "tcp" mode, TCP ports and UDP ports
//     from 1 to 65535 and TLS server names (exact names or *.name, as
//     host patterns but not "*"): at least one of any, none twice in its
//     list;
//  2. the server answers with a [Message] of type "accept", carrying the
//     protocol version the session speaks (the newest in both ranges) and
//     its software version; or "reject", carrying a Code (one of the
//     Reject* constants), a Retry class and a Reason for the operator,
//     which the client prints; the server then ends the session.
//
// A version 1 client sends only Protocol (1): this server rejects it with
// [RejectProtocol], in a reason that a version 1 client prints, telling to
// upgrade it. A version 2 client is accepted, and served as version 2
// says: its new streams cost it a round trip more than version 3's.
//
// The retry classes say what the client does next: [RetryNow], connect
// again at once (the server is shutting down and its successor takes
// clients); [RetryLater], back off exponentially as after a network error;
// [RetryNever], nothing will change until an operator acts: wait the
// longest backoff between attempts, and say so.
//
// The server gives up on a client that has not sent its Hello within
// [HandshakeTimeout], and a client on a server that has not answered
// within it. After "accept" the control stream stays open for the life of
// the session; the server may send further messages on it, and the client
// sends nothing more. None comes before "accept".
//
// A "withdraw" message lists in Ports announced TCP ports, and in
// UDPPorts announced UDP ports, the server has stopped listening on, with a Reason for the operator: typically a
// reloaded server configuration no longer allows them. The session stays
// up, with its other ports, and the client needs to do nothing but report
// it; the server does not repeat it while the ports stay withdrawn. If the
// server's configuration allows the ports again, it listens on them again
// without a message. A port the server refuses when the client connects
// is not withdrawn: the whole announcement is rejected instead.
//
// A "reject" message after "accept" says the server ends the session
// because its configuration no longer admits the client (its tunnel was
// deleted, its token replaced or expired, a tunnel's max_clients
// lowered), with a Code, a Retry class and a Reason, as in the handshake:
// the server then ends the session, and the client prints the reason and
// retries as the class says. A client that does not know it ignores it,
// and sees only the session end.
//
// A "shutdown" message says the server is stopping (its process is
// exiting), with a Reason: it finishes the streams in flight, within its
// grace period, then ends the session. The client keeps its sessions to
// the other servers of its fleet, and reconnects to this one with its
// shortest backoff, capped at a second for a minute, so that a server
// restarted in its place has the client's session back as soon as it
// listens.
//
// A "peers" message lists in Peers the control-plane URLs (ws:// or
// wss://, at most [MaxPeers]) of the other servers of the server's fleet,
// as its operator configured them: for servers behind one load balancer
// that a client cannot address one by one. The server sends it after
// "accept" when it has peers, and again when a new configuration changes
// them. A client keeps a session to each URL it was given and each one a
// server it is connected to advertises, and to no other; a URL no server
// advertises any more loses its session. A client trusts a peer with its
// token only if a server it was given advertised it (not a peer), it is
// wss:// when that server is, it has no user, query or fragment, and its
// host is under that server's domain or on the client's own list; what
// a server advertised goes when its session ends, or when its next
// session does not advertise it, after a grace (this package's client:
// 30s).
//
// # Data streams
//
// Every later stream carries one visitor connection. The server opens it
// and writes a [StreamHeader]; the client answers with a [StreamReply]
// before any other byte. In version 3 the server sends the visitor's
// first bytes right behind the header, without waiting for the reply: at
// most [MaxEarlyData] of them, and it keeps a copy of those until the
// reply comes. The client connects the stream's upstream before it
// forwards anything, so a client that cannot reach it has forwarded
// nothing, and drops what it was sent. In version 2 the server writes
// nothing after the header until it has read the reply.
//
//   - Kind "http": Host is the announced host pattern the visitor's request
//     matched (for example "app.example.com", "*.example.com" or "*"). The
//     client connects to that host's upstream, then replies. The rest of
//     the stream is HTTP/1.1 as the server's reverse proxy speaks it,
//     possibly several requests on one kept-alive stream, which the client
//     relays to the upstream. A client whose upstream URL has a path
//     prefix may instead reply at once and proxy each request itself,
//     answering 502 to those it cannot deliver. For a host announced with
//     an h2c:// or h2:// upstream ([HTTPUpstream.HTTP2]) the rest of the
//     stream is HTTP/2 with prior knowledge (RFC 9113, section 3.3: the
//     connection preface, never Upgrade: h2c), many requests multiplexed
//     on one stream; the client relays it to the upstream in clear text
//     for h2c://, and over TLS for h2://, where the upstream must choose
//     "h2" by ALPN (the client replies StreamUpstreamUnreachable if it does
//     not). The server waits for the reply before it writes the preface:
//     one round trip for a connection that carries every request to that
//     client's host, and a refused stream fails the dial, which the server
//     retries on another client whatever the request. A server older than
//     this rejects a Hello with those schemes (its reason names the URL).
//
//   - Kind "tcp": Port is the public port the visitor connected to;
//     RemoteAddr and LocalAddr are the visitor's and the server's addresses,
//     and ProxyProtocol ("", "v1" or "v2") asks the client to write a PROXY
//     protocol header carrying them to the upstream before any other byte.
//     The client connects to the port's upstream, writes that header, then
//     replies. The rest of the stream is the raw TCP byte stream.
//
//   - Kind "udp": one visitor's flow of datagrams to a public UDP port:
//     Port is that port, RemoteAddr the visitor's address, LocalAddr the
//     server's. The client opens a UDP socket to the port's upstream (one
//     per stream, so that the upstream's answers come back to this
//     visitor alone), then replies. After the reply each direction
//     carries datagrams, each framed as its length (2 bytes, big-endian,
//     0 to [MaxDatagramSize]) followed by its bytes: the client writes
//     each datagram it reads from the stream to the upstream, and frames
//     each one the upstream sends back. Datagrams keep their boundaries
//     and are never split, joined or truncated; a side that cannot send
//     one whole drops it. The server ends the stream (RST) when the flow
//     has been idle for its udp_idle_timeout; the client ends it when its
//     socket fails. Either side may drop datagrams it cannot keep up
//     with, as the network could. ProxyProtocol "v2" asks the client to
//     put a PROXY protocol v2 header (its DGRAM form, carrying RemoteAddr
//     and LocalAddr) at the start of every datagram it writes to the
//     upstream; v1 has no datagram form.
//
//   - Kind "tls": a visitor's TLS connection that a caddy-l4 route of
//     the server passed to the inlets handler: Host is the announced TLS
//     name its server name matched, RemoteAddr, LocalAddr and
//     ProxyProtocol are as for "tcp". The client connects to that name's
//     upstream, then replies. The rest of the stream is the raw TCP byte
//     stream, starting with the visitor's ClientHello: the upstream
//     terminates TLS.
//
// A reply with an empty Error means the upstream is connected. Otherwise
// Error says why not ([StreamUpstreamUnreachable], [StreamUnknownTarget],
// [StreamUnknownKind]); the client then sends FIN and nothing else, and the
// server resets the stream once it has read the reply. Nothing of the
// visitor's has reached the upstream, so the server offers the visitor to
// another client, on a new stream with the same header, the bytes it kept
// and, if the visitor had half-closed, a FIN; it passes over, for a while,
// a client that could not reach an upstream. A stream that breaks before
// its reply is not offered again once any byte of the visitor's went with
// it: its client may have taken it. The server waits at most
// [StreamReplyTimeout] for a reply.
//
// Either side passes on how the other end of its relay ended: a FIN as a
// FIN, a reset or an error as an RST.
//
// # Retiring a session
//
// A client that replaces a session by another (a reload of its
// configuration) sends a yamux Go Away on the old one, once the new one is
// accepted: the server removes it from its routing at once, opening no
// more streams on it (new visitors go to the client's other sessions;
// a port or host only it served closes, or answers 503), and the streams
// open on it go on until they end. The client then closes it.
// A session stays one mode: a client with HTTP hosts and layer-4
// tunnels keeps two sessions to each server, so that each is counted,
// limited and shown under its mode as the monitoring reference has it
// (http_ and tcp_controlplane_connected_gauge, the status's mode).
//
// # Status and metrics
//
// The control plane also answers GET [StatusPath] with the server's status
// as JSON (the shape of inlets-pro's: "info" and "clients") and GET
// [MetricsPath] with its Prometheus metrics, both with the same bearer token
// as /connect and 401 without it.
package tunnel
