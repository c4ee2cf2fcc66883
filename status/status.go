// Package status is the status of a caddy-inlets server: the JSON that the
// control plane serves at GET /status and Caddy's admin API at GET
// /inlets/status, in the shape of inlets-pro's, and the table that
// `inlets status` prints from it.
//
// This package links no Caddy, because the standalone `inlets` client
// imports it. Building a Status from the live sessions, and the
// admin.api.inlets module, need Caddy and the session registry: they are
// in internal/caddystatus.
package status

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/version"
)

// Status is the server's status: what it is, and who is connected.
type Status struct {
	Info Info `json:"info"`
	// Clients are the connected clients, in the order they connected.
	// Never null in JSON: an empty list when no client is connected.
	Clients []Client `json:"clients"`
}

// Info describes the server.
type Info struct {
	// Version of caddy-inlets in the server, from the binary's build
	// information ("dev" when built from a checkout without a version).
	Version string `json:"version"`
	// SHA is the commit caddy-inlets was built from, or "unknown".
	SHA string `json:"sha"`
	// Mode summarises the connected clients' modes: see Mode.
	Mode string `json:"mode"`
	// StartTime is when the server started serving tunnels. Config
	// reloads do not change it.
	StartTime time.Time `json:"startTime"`
	// Hostname is the server's host name.
	Hostname string `json:"hostname"`
	// InstanceID tells apart the servers of a fleet, and two runs of one
	// server: random, drawn when the process starts (caddy-inlets' own;
	// inlets-pro has none).
	InstanceID string `json:"instanceID,omitempty"`
}

// instanceID is this process's InstanceID.
var instanceID = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// Client is one connected client session.
type Client struct {
	// ClientID is the ID the client announced; replicas may share one.
	ClientID string `json:"clientID"`
	// RemoteAddr is the client's address as the control plane saw it.
	RemoteAddr string `json:"remoteAddr"`
	// Since is when the server accepted the session.
	Since time.Time `json:"since"`
	// Upstreams are what the client announced: "host=url" for HTTP
	// ("*=http://127.0.0.1:8080" for the catch-all), the client's local
	// "host:port" for TCP, "udp://host:port" for UDP, and
	// "name=tls://host:port" for a TLS name.
	Upstreams []string `json:"upstreams"`

	// Mode is the client's mode, "http" or "tcp".
	Mode string `json:"mode"`
	// Version is the client's software version.
	Version string `json:"version"`
	// Ports are the public ports a TCP client announced, in the order of
	// its TCP upstreams.
	Ports []int `json:"ports,omitempty"`
	// UDPPorts are the public UDP ports the client announced, in the
	// order of its UDP upstreams.
	UDPPorts []int `json:"udpPorts,omitempty"`
	// TLSNames are the TLS server names the client announced, passed
	// through to it by the server's caddy-l4 routes.
	TLSNames []string `json:"tlsNames,omitempty"`
	// Tunnel is the name of the tunnel whose token the client presented;
	// absent for the server's own token.
	Tunnel string `json:"tunnel,omitempty"`
	// RTTMillis is the round-trip time to the client the server measured
	// last (as the session starts, and every 30s after), in milliseconds;
	// absent before the first measurement (caddy-inlets' own).
	RTTMillis float64 `json:"rttMs,omitempty"`
	// Retired is set on a session its client has retired, as a client
	// reloading its config file does once the session that replaces it
	// is up: it takes no new visitors, and its open streams go on until
	// they end (caddy-inlets' own).
	Retired bool `json:"retired,omitempty"`
}

// ModeNone is Info.Mode while no client is connected.
const ModeNone = "none"

// Mode summarises the modes of clients: the distinct modes, sorted and
// joined with a comma ("http", "tcp", or "http,tcp" when one server has
// clients of both kinds), or ModeNone when there are no clients. A
// caddy-inlets server is not started in one mode as inlets-pro's is: any
// server takes HTTP clients, and takes TCP clients when its TCP data plane
// is configured, so the mode reported is the one in use.
func Mode(clients []Client) string {
	var modes []string
	for _, c := range clients {
		if !slices.Contains(modes, c.Mode) {
			modes = append(modes, c.Mode)
		}
	}
	if len(modes) == 0 {
		return ModeNone
	}
	slices.Sort(modes)
	return strings.Join(modes, ",")
}

// New returns the status of this server: its version, commit and host
// name, started at start, with clients connected.
func New(start time.Time, clients []Client) Status {
	if clients == nil {
		clients = []Client{}
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return Status{
		Info: Info{
			Version:    version.Version(),
			SHA:        version.SHA(),
			Mode:       Mode(clients),
			StartTime:  start,
			Hostname:   host,
			InstanceID: instanceID,
		},
		Clients: clients,
	}
}

// ServeJSON answers an HTTP request with s as indented JSON.
func ServeJSON(w http.ResponseWriter, s Status) {
	body, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		// Status holds only strings, times and ints.
		http.Error(w, "encoding status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}
