package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// Hello is the client's first message on the control stream.
type Hello struct {
	// ClientID names the client in status and logs: 1 to MaxClientIDLen
	// printable ASCII characters, no space. Several clients may share one
	// ID (replicas of one deployment).
	ClientID string `json:"clientID"`
	// Version is the client's software version, for status and logs.
	Version string `json:"version"`
	// Protocol is the newest protocol version the client speaks, and
	// MinProtocol the oldest (0 means Protocol: one version only). A
	// version 1 client sends only Protocol, 1.
	Protocol    int `json:"protocol"`
	MinProtocol int `json:"minProtocol,omitempty"`
	// Mode is ModeHTTP or ModeTCP.
	Mode string `json:"mode"`
	// HTTP lists the hosts the client serves in HTTP mode.
	HTTP []HTTPUpstream `json:"http,omitempty"`
	// TCP lists the TCP ports the client serves in TCP mode.
	TCP []TCPUpstream `json:"tcp,omitempty"`
	// UDP lists the UDP ports the client serves in TCP mode (version 2
	// servers that do not serve UDP ignore the field and see a client
	// that announces no port of it).
	UDP []UDPUpstream `json:"udp,omitempty"`
	// TLS lists the TLS server names the client serves in TCP mode: the
	// server passes a visitor's TLS connection for one of them through,
	// untouched, from a caddy-l4 route (layer4.handlers.inlets).
	TLS []TLSUpstream `json:"tls,omitempty"`
}

// TLSUpstream is one announced TLS server name and where the client
// relays its connections, which the upstream terminates.
type TLSUpstream struct {
	// Name is an exact lower-case name ("a.example.com") or a one-label
	// wildcard ("*.example.com"); not the catch-all "*".
	Name string `json:"name"`
	// Upstream is the client's local "host:port". The server only
	// displays it.
	Upstream string `json:"upstream"`
}

// HTTPUpstream is one announced host and the URL the client relays it to.
type HTTPUpstream struct {
	// Host is an exact name ("app.example.com"), a one-label wildcard
	// ("*.example.com") or the catch-all "*"; see ValidateHostPattern.
	Host string `json:"host"`
	// URL is the client's local upstream: http:// or https://, with an
	// optional path prefix, or h2c:// or h2:// (see ParseUpstreamURL). Its
	// scheme tells the server which HTTP the host's streams carry (see
	// HTTP2); the server only displays the rest.
	URL string `json:"url"`
}

// TCPUpstream is one announced public port and where the client relays it.
type TCPUpstream struct {
	// Port is the public port on the server, 1 to 65535.
	Port int `json:"port"`
	// Upstream is the client's local "host:port". The server only
	// displays it.
	Upstream string `json:"upstream"`
}

// UDPUpstream is one announced public UDP port and where the client
// relays its datagrams.
type UDPUpstream struct {
	// Port is the public UDP port on the server, 1 to 65535.
	Port int `json:"port"`
	// Upstream is the client's local "host:port". The server only
	// displays it.
	Upstream string `json:"upstream"`
}

// Message is a control message from the server.
type Message struct {
	// Type is TypeAccept, TypeReject, TypeWithdraw, TypeShutdown or
	// TypePeers.
	Type string `json:"type"`
	// Code says, for a machine, why a client is rejected: one of the
	// Reject* codes. A code the client does not know is read as
	// RetryLater.
	Code string `json:"code,omitempty"`
	// Retry says whether connecting again can help a rejected client:
	// RetryNow, RetryLater or RetryNever.
	Retry string `json:"retry,omitempty"`
	// Reason explains a rejection or a withdrawal to the operator, in at
	// most MaxReasonLen bytes.
	Reason string `json:"reason,omitempty"`
	// Version is the server's software version (accept).
	Version string `json:"version,omitempty"`
	// Protocol is the protocol version the session speaks (accept).
	Protocol int `json:"protocol,omitempty"`
	// Ports lists the TCP ports, and UDPPorts the UDP ports, that a
	// withdraw message takes away.
	Ports    []int `json:"ports,omitempty"`
	UDPPorts []int `json:"udpPorts,omitempty"`
	// Peers lists, in a peers message, the control-plane URLs of the
	// other servers of the fleet (ws:// or wss://), at most MaxPeers.
	Peers []string `json:"peers,omitempty"`
}

// MaxPeers bounds a peers message's URLs.
const MaxPeers = 16

// StreamHeader opens every data stream; the server writes it.
type StreamHeader struct {
	// Kind is KindHTTP, KindTCP, KindUDP or KindTLS.
	Kind string `json:"kind"`
	// Host is, on an HTTP stream, the announced host pattern that the
	// visitor's request matched; on a TLS stream, the announced name that
	// the visitor's server name matched.
	Host string `json:"host,omitempty"`
	// Port is, on a TCP or UDP stream, the public port the visitor
	// connected (or sent its datagrams) to.
	Port int `json:"port,omitempty"`
	// RemoteAddr and LocalAddr are, on a TCP or UDP stream, the visitor's
	// address and the server's address it connected to (IP:port).
	RemoteAddr string `json:"remoteAddr,omitempty"`
	LocalAddr  string `json:"localAddr,omitempty"`
	// ProxyProtocol ("", "v1" or "v2") asks the client, on a TCP stream,
	// to send its upstream a PROXY protocol header of that version
	// carrying RemoteAddr and LocalAddr before any other byte.
	ProxyProtocol string `json:"proxyProtocol,omitempty"`
}

// StreamReply is the client's answer to a StreamHeader, once it has
// connected the stream's upstream, or failed to.
type StreamReply struct {
	// Error is empty when the stream is ready to carry the visitor's
	// bytes; otherwise one of the Stream* codes, and the stream ends.
	Error string `json:"error,omitempty"`
	// Reason says more, for the server's log, in at most MaxReasonLen
	// bytes.
	Reason string `json:"reason,omitempty"`
}

// WriteFrame writes v as one length-prefixed JSON frame.
func WriteFrame(w io.Writer, v any) error {
	buf, err := AppendFrame(nil, v)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// AppendFrame appends v, as one length-prefixed JSON frame, to b.
func AppendFrame(b []byte, v any) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	switch v := v.(type) {
	case StreamHeader:
		b = appendStreamHeader(b, &v)
	case StreamReply:
		b = appendStreamReply(b, &v)
	default:
		body, err := json.Marshal(v)
		if err != nil {
			return b[:start], err
		}
		b = append(b, body...)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b, nil
}

// ReadFrame reads one length-prefixed JSON frame of at most limit bytes into v.
func ReadFrame(r io.Reader, limit int, v any) error {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > uint32(limit) {
		return fmt.Errorf("frame of %d bytes exceeds the limit of %d", n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("reading %d-byte frame: %w", n, err)
	}
	var err error
	switch v := v.(type) {
	case *StreamHeader:
		err = decodeStreamHeader(body, v)
	case *StreamReply:
		err = decodeStreamReply(body, v)
	default:
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		return fmt.Errorf("decoding frame: %w", err)
	}
	return nil
}

// TruncateReason shortens a reason to at most MaxReasonLen bytes, on a
// character boundary, so that what one side echoes of the other's input
// stays bounded.
func TruncateReason(s string) string {
	if len(s) <= MaxReasonLen {
		return s
	}
	cut := MaxReasonLen - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
