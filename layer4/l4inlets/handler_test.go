package l4inlets

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func unmarshal(input string) (*Handler, error) {
	tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
	if err != nil {
		return nil, err
	}
	h := new(Handler)
	return h, h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
}

func TestHandlerCaddyfile(t *testing.T) {
	h, err := unmarshal("inlets {\n\tproxy_protocol v2\n\tidle_timeout 30m\n\thandshake_timeout 5s\n\tlb_policy least_conn\n}")
	if err != nil || h.ProxyProtocol != "v2" || time.Duration(h.IdleTimeout) != 30*time.Minute || time.Duration(h.HandshakeTimeout) != 5*time.Second || h.LBPolicy != "least_conn" {
		t.Fatalf("got %+v, %v", h, err)
	}
	if h, err := unmarshal("inlets"); err != nil || *h != (Handler{}) {
		t.Fatalf("bare inlets: %+v, %v", h, err)
	}
	for input, want := range map[string]string{
		"inlets extra":                        "wrong argument count",
		"inlets {\n\tlisten :443\n}":          `unknown option "listen" of the layer4 inlets handler: want proxy_protocol, idle_timeout, handshake_timeout or lb_policy`,
		"inlets {\n\tidle_timeout -1s\n}":     `idle_timeout "-1s": want a positive duration`,
		"inlets {\n\tproxy_protocol\n}":       "wrong argument count",
		"inlets {\n\thandshake_timeout 0s\n}": `handshake_timeout "0s": want a positive duration`,
	} {
		if _, err := unmarshal(input); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", input, err, want)
		}
	}
}

func TestProvisionRefusesAnUnknownProxyProtocolOrPolicy(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	h := &Handler{ProxyProtocol: "v3"}
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), `proxy_protocol "v3": want v1 or v2`) {
		t.Fatalf("got %v", err)
	}
	h = &Handler{LBPolicy: "random"}
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), `lb_policy "random": want round_robin or least_conn`) {
		t.Fatalf("got %v", err)
	}
}

// FuzzHandlerCaddyfile reads arbitrary Caddyfile tokens as the handler's
// block: an error or a config, never a panic; what it sets came from the
// input.
func FuzzHandlerCaddyfile(f *testing.F) {
	f.Fuzz(func(t *testing.T, body string) {
		h, err := unmarshal("inlets {\n" + body + "\n}")
		if err != nil {
			return
		}
		if h.ProxyProtocol != "" && !strings.Contains(body, "proxy_protocol") {
			t.Fatalf("proxy_protocol from nowhere: %q", h.ProxyProtocol)
		}
		if h.IdleTimeout < 0 || h.HandshakeTimeout < 0 {
			t.Fatalf("negative timeout accepted: %+v", h)
		}
	})
}
