package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestTableOfAKnownState(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	s := Status{
		Info: Info{Version: "0.8.9-rc1", SHA: "f4fc15b", Mode: "tcp", StartTime: now.Add(-49*time.Minute - 10*time.Second), Hostname: "unruffled-banzai4"},
		Clients: []Client{
			{ClientID: "730aa1bb96474cbc9f7e76c135e81da8", RemoteAddr: "81.99.136.188:58102", Since: now.Add(-15 * time.Minute),
				Upstreams: []string{"localhost:8001", "localhost:8000", "localhost:2222"}, Mode: "tcp"},
			{ClientID: "22fbfe123c884e8284ee0da3680c1311", RemoteAddr: "81.99.136.188:64018", Since: now.Add(-6 * time.Minute),
				Upstreams: []string{"localhost:8001", "localhost:8000", "localhost:2222"}, Mode: "tcp"},
		},
	}
	var b strings.Builder
	if err := WriteTable(&b, s, now); err != nil {
		t.Fatal(err)
	}
	want := `Server info:
Hostname: unruffled-banzai4
Started:  49 minutes
Mode:     tcp
Version:  0.8.9-rc1
Connected clients:
Client ID                        Remote Address      Connected  Upstreams
730aa1bb96474cbc9f7e76c135e81da8 81.99.136.188:58102 15 minutes localhost:8001, localhost:8000, localhost:2222
22fbfe123c884e8284ee0da3680c1311 81.99.136.188:64018 6 minutes  localhost:8001, localhost:8000, localhost:2222
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	s.Clients, s.Info.Mode, s.Info.StartTime = nil, "none", now.Add(-25*time.Hour)
	WriteTable(&b, s, now)
	if !strings.Contains(b.String(), "Started:  1 day\n") || !strings.HasSuffix(b.String(), "Connected clients: none\n") {
		t.Errorf("no clients:\n%s", b.String())
	}
}

func TestAgoInWords(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		300 * time.Millisecond: "now",
		30 * time.Second:       "30 seconds",
		90 * time.Second:       "1 minute",
		49 * time.Minute:       "49 minutes",
		5 * time.Hour:          "5 hours",
		30 * time.Hour:         "1 day",
		3 * 24 * time.Hour:     "3 days",
		20 * 24 * time.Hour:    "2 weeks",
	} {
		if got := Ago(now.Add(-d), now); got != want {
			t.Errorf("Ago(%s) = %q, want %q", d, got, want)
		}
	}
}

// With a tunnel's client among them, the table leads with a Tunnel
// column, "-" for the server token's clients.
func TestTableHasATunnelColumnWhenClientsBelongToTunnels(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	s := Status{
		Info: Info{Version: "1.0.0", Mode: "http", StartTime: now.Add(-time.Hour), Hostname: "h"},
		Clients: []Client{
			{ClientID: "a1", RemoteAddr: "10.0.0.1:1", Since: now.Add(-time.Minute), Upstreams: []string{"shop.acme.example.com=http://127.0.0.1:3000"}, Tunnel: "acme"},
			{ClientID: "own", RemoteAddr: "10.0.0.2:2", Since: now.Add(-time.Minute), Upstreams: []string{"app.example.com=http://127.0.0.1:3001"}},
		},
	}
	var b strings.Builder
	if err := WriteTable(&b, s, now); err != nil {
		t.Fatal(err)
	}
	want := `Connected clients:
Tunnel Client ID Remote Address Connected Upstreams
acme   a1        10.0.0.1:1     1 minute  shop.acme.example.com=http://127.0.0.1:3000
-      own       10.0.0.2:2     1 minute  app.example.com=http://127.0.0.1:3001
`
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("got:\n%s\nwant it to end with:\n%s", b.String(), want)
	}
}

func TestFleetTableSaysWhenNoClientIsConnected(t *testing.T) {
	now := time.Now()
	empty := New(now, nil)
	var b strings.Builder
	if err := WriteFleetTable(&b, []ServerStatus{{URL: "ws://a", Status: &empty}, {URL: "ws://b", Status: &empty}}, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "No client is connected to any of the 2 servers.") || strings.Contains(b.String(), "Every client") {
		t.Fatalf("two servers without clients:\n%s", b.String())
	}
	one := New(now, []Client{{ClientID: "c1", Mode: "http"}})
	b.Reset()
	WriteFleetTable(&b, []ServerStatus{{URL: "ws://a", Status: &one}, {URL: "ws://b", Status: &empty}, {URL: "ws://c", Error: "refused"}}, now)
	if out := b.String(); !strings.Contains(out, "Missing: c1 is not connected to ws://b") || !strings.Contains(out, "2 of 3 servers answered.") || !strings.Contains(out, "== ws://c: no answer: refused") {
		t.Fatalf("a server missing the client, one not answering:\n%s", out)
	}
}

// The round-trip times a caddy-inlets server measured get a column; a
// client not measured yet shows "-".
func TestTableShowsEachClientsRoundTripTime(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	s := Status{
		Info: Info{Version: "1.0.0", Mode: "http", StartTime: now.Add(-time.Hour), Hostname: "edge"},
		Clients: []Client{
			{ClientID: "laptop", RemoteAddr: "203.0.113.9:40000", Since: now.Add(-5 * time.Minute), Upstreams: []string{"app.example.com=http://127.0.0.1:3000"}, Mode: "http", RTTMillis: 52.4},
			{ClientID: "lab", RemoteAddr: "198.51.100.2:41000", Since: now.Add(-time.Minute), Upstreams: []string{"*=http://10.0.0.5"}, Mode: "http"},
			{ClientID: "sat", RemoteAddr: "192.0.2.77:42000", Since: now.Add(-time.Minute), Upstreams: []string{"far.example.com=http://10.1.0.1"}, Mode: "http", RTTMillis: 1250},
			{ClientID: "local", RemoteAddr: "127.0.0.1:43000", Since: now.Add(-time.Minute), Upstreams: []string{"near.example.com=http://10.2.0.1"}, Mode: "http", RTTMillis: 0.31},
		},
	}
	var b strings.Builder
	if err := WriteTable(&b, s, now); err != nil {
		t.Fatal(err)
	}
	want := `Connected clients:
Client ID Remote Address     Connected RTT   Upstreams
laptop    203.0.113.9:40000  5 minutes 52ms  app.example.com=http://127.0.0.1:3000
lab       198.51.100.2:41000 1 minute  -     *=http://10.0.0.5
sat       192.0.2.77:42000   1 minute  1.25s far.example.com=http://10.1.0.1
local     127.0.0.1:43000    1 minute  0.3ms near.example.com=http://10.2.0.1
`
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("got:\n%s\nwant it to end with:\n%s", b.String(), want)
	}
}

// A TCP or UDP upstream whose public port is another is led by it; one
// on its own port reads as inlets-pro's.
func TestTableShowsTheirPublicPortsBesideTCPAndUDPUpstreams(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	c := Client{ClientID: "lab", RemoteAddr: "10.0.0.1:1", Since: now.Add(-time.Minute), Mode: "tcp",
		Upstreams: []string{"127.0.0.1:22", "127.0.0.1:8000", "udp://127.0.0.1:53", "k8s.example.com=tls://127.0.0.1:443"},
		Ports:     []int{2222, 8000}, UDPPorts: []int{5353}, TLSNames: []string{"k8s.example.com"}}
	var b strings.Builder
	if err := WriteTable(&b, Status{Clients: []Client{c}}, now); err != nil {
		t.Fatal(err)
	}
	if want := "2222=127.0.0.1:22, 127.0.0.1:8000, 5353=udp://127.0.0.1:53, k8s.example.com=tls://127.0.0.1:443\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("got:\n%s\nwant the row to end with %q", b.String(), want)
	}
}

// A session its client retired says so after its upstreams, in the table
// and in the JSON.
func TestARetiredSessionSaysSo(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	s := Status{
		Info: Info{Version: "1.0.0", Mode: "tcp", StartTime: now.Add(-time.Hour), Hostname: "edge"},
		Clients: []Client{
			{ClientID: "lab", RemoteAddr: "10.0.0.1:1", Since: now.Add(-time.Hour), Upstreams: []string{"127.0.0.1:22"}, Ports: []int{22}, Mode: "tcp", Retired: true},
			{ClientID: "lab", RemoteAddr: "10.0.0.1:2", Since: now.Add(-time.Minute), Upstreams: []string{"127.0.0.1:23"}, Ports: []int{23}, Mode: "tcp"},
		},
	}
	var b strings.Builder
	if err := WriteTable(&b, s, now); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(b.String(), "\n"); !strings.HasSuffix(lines[len(lines)-3], "127.0.0.1:22 (retired: its open connections end, nothing new)") ||
		strings.Contains(lines[len(lines)-2], "retired") {
		t.Errorf("got:\n%s", b.String())
	}
	raw, err := json.Marshal(s.Clients)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(raw), `"retired":true`) != 1 {
		t.Errorf("JSON %s: want one retired session", raw)
	}
}
