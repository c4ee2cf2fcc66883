package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// Hello is the client's first message on the control stream.
type Hello struct {
	// ClientID names the client in status and logs. Several clients may
	// share one ID (replicas of one deployment).
	ClientID string `json:"clientID"`
	// Version is the client's software version.
	Version string `json:"version"`
	// Protocol is the ProtocolVersion the client speaks.
	Protocol int `json:"protocol"`
	// Mode is ModeHTTP or ModeTCP.
	Mode string `json:"mode"`
	// HTTP lists the hosts the client serves in HTTP mode.
	HTTP []HTTPUpstream `json:"http,omitempty"`
	// TCP lists the ports the client serves in TCP mode.
	TCP []TCPUpstream `json:"tcp,omitempty"`
}

// HTTPUpstream is one announced host and the URL the client relays it to.
type HTTPUpstream struct {
	// Host is an exact name ("app.example.com"), a one-label wildcard
	// ("*.example.com") or the catch-all "*".
	Host string `json:"host"`
	// URL is the client's local upstream, http:// or https://, with an
	// optional path prefix. The server only displays it.
	URL string `json:"url"`
}

// TCPUpstream is one announced public port and where the client relays it.
type TCPUpstream struct {
	// Port is the public port on the server.
	Port int `json:"port"`
	// Upstream is the client's local "host:port". The server only displays it.
	Upstream string `json:"upstream"`
}

// Message is a control message from the server.
type Message struct {
	// Type is TypeAccept, TypeReject or TypeWithdraw.
	Type string `json:"type"`
	// Reason explains a rejection or a withdrawal to the operator.
	Reason string `json:"reason,omitempty"`
	// Version is the server's software version (accept).
	Version string `json:"version,omitempty"`
	// Ports lists the ports that a withdraw message takes away.
	Ports []int `json:"ports,omitempty"`
}

// StreamHeader opens every data stream.
type StreamHeader struct {
	Kind          string `json:"kind"`
	Host          string `json:"host,omitempty"`
	Port          int    `json:"port,omitempty"`
	RemoteAddr    string `json:"remoteAddr,omitempty"`
	LocalAddr     string `json:"localAddr,omitempty"`
	ProxyProtocol string `json:"proxyProtocol,omitempty"`
}

// WriteFrame writes v as one length-prefixed JSON frame.
func WriteFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
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
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding frame: %w", err)
	}
	return nil
}
