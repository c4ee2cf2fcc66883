package app

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzValidatePeers checks that a peer URL the config accepts is one a
// client can dial: ws:// or wss:// with a host, no credentials.
func FuzzValidatePeers(f *testing.F) {
	f.Fuzz(func(t *testing.T, list string) {
		peers := strings.Fields(list)
		if ValidatePeers(peers) != nil {
			return
		}
		if len(peers) > 16 {
			t.Fatalf("accepted %d peers", len(peers))
		}
		for _, p := range peers {
			u, err := url.Parse(p)
			if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" || u.User != nil {
				t.Fatalf("accepted peer %q", p)
			}
		}
	})
}
