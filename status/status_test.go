package status

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/version"
)

func TestModeSaysWhichKindsOfClientsAreConnected(t *testing.T) {
	for _, tt := range []struct {
		modes []string
		want  string
	}{
		{nil, "none"},
		{[]string{"http"}, "http"},
		{[]string{"http", "http"}, "http"},
		{[]string{"tcp"}, "tcp"},
		{[]string{"tcp", "http", "tcp"}, "http,tcp"},
	} {
		var clients []Client
		for _, m := range tt.modes {
			clients = append(clients, Client{Mode: m})
		}
		if got := Mode(clients); got != tt.want {
			t.Errorf("Mode(%v) = %q, want %q", tt.modes, got, tt.want)
		}
	}
}

// The JSON has every field of inlets-pro's status, under its names.
func TestJSONHasTheFieldsOfTheReference(t *testing.T) {
	start := time.Date(2021, 8, 13, 12, 23, 17, 321388000, time.FixedZone("", 3600))
	s := New(start, []Client{{
		ClientID: "0c5f2a1ca0174ee3a177c3be7cd6d950", RemoteAddr: "[::1]:63671",
		Since: start.Add(2 * time.Second), Upstreams: []string{"*=http://127.0.0.1:8080"},
		Mode: "http", Version: "v1.0.0",
	}})
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(raw, &got)
	info := got["info"].(map[string]any)
	for _, k := range []string{"version", "sha", "mode", "startTime", "hostname"} {
		if _, ok := info[k]; !ok {
			t.Errorf("info has no %q: %s", k, raw)
		}
	}
	if info["startTime"] != "2021-08-13T12:23:17.321388+01:00" || info["mode"] != "http" ||
		info["version"] != version.Version() || info["sha"] != version.SHA() {
		t.Errorf("info: %v", info)
	}
	client := got["clients"].([]any)[0].(map[string]any)
	want := map[string]any{
		"clientID": "0c5f2a1ca0174ee3a177c3be7cd6d950", "remoteAddr": "[::1]:63671",
		"since": "2021-08-13T12:23:19.321388+01:00", "upstreams": []any{"*=http://127.0.0.1:8080"},
		"mode": "http", "version": "v1.0.0",
	}
	if !reflect.DeepEqual(client, want) {
		t.Errorf("client:\n got %v\nwant %v", client, want)
	}

	empty, _ := json.Marshal(New(start, nil))
	if !strings.Contains(string(empty), `"clients":[]`) || !strings.Contains(string(empty), `"mode":"none"`) {
		t.Errorf("no clients: %s", empty)
	}
}
