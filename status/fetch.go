package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxStatusSize bounds the answer Fetch reads: thousands of clients fit.
const maxStatusSize = 16 << 20

// StatusURL turns a control-plane URL, as clients are given it, into the
// URL of its status: ws:// and wss:// become http:// and https://, and the
// path's last element /connect (or an empty path) becomes /status, so
// `--url wss://tunnel.example.com` and `--url wss://tunnel.example.com/connect`
// both work. A path under a prefix (https://example.com/inlets) gets
// /status appended.
func StatusURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	case "http", "https":
	default:
		return "", fmt.Errorf("--url %q must start with ws://, wss://, http:// or https://", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("--url %q has no host", raw)
	}
	path := strings.TrimSuffix(u.Path, "/")
	switch {
	case strings.HasSuffix(path, "/status"):
	case strings.HasSuffix(path, "/connect"):
		path = strings.TrimSuffix(path, "/connect") + "/status"
	default:
		path += "/status"
	}
	u.Path, u.RawPath = path, ""
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// Fetch gets the status from a control plane at rawURL (see StatusURL)
// with the server's token. It returns the decoded status and the JSON as
// the server sent it. Its errors are one line each, meant for the
// operator: a refused token, a server that cannot be reached, and an
// answer that is not an inlets status are told apart.
func Fetch(ctx context.Context, client *http.Client, rawURL, token string) (Status, []byte, error) {
	var s Status
	target, err := StatusURL(rawURL)
	if err != nil {
		return s, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return s, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the method and URL
		}
		return s, nil, fmt.Errorf("cannot reach %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusSize))
	if err != nil {
		return s, nil, fmt.Errorf("reading the status from %s: %v", target, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return s, nil, fmt.Errorf("%s refused the token (HTTP 401): give the server's token with --token or --token-file", target)
	case resp.StatusCode == http.StatusTooManyRequests:
		return s, nil, fmt.Errorf("%s refuses this address for now, after too many wrong tokens (HTTP 429): wait %ss, then try again with the right token", target, resp.Header.Get("Retry-After"))
	case resp.StatusCode != http.StatusOK:
		return s, nil, fmt.Errorf("%s is not an inlets control plane: it answered HTTP %d (is --url the address clients connect to?)", target, resp.StatusCode)
	}
	// Anything else that answers 200 must at least say what it runs and
	// since when; a web page or another JSON API does not.
	var probe struct {
		Info    *Info     `json:"info"`
		Clients *[]Client `json:"clients"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || probe.Info == nil || probe.Clients == nil ||
		probe.Info.Version == "" || probe.Info.StartTime.IsZero() {
		return s, nil, fmt.Errorf("%s is not an inlets control plane: its answer is not inlets status JSON (is --url the address clients connect to?)", target)
	}
	s.Info, s.Clients = *probe.Info, *probe.Clients
	return s, body, nil
}
