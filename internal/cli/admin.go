package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-inlets/caddy-inlets/status"
)

// adminTimeout bounds each command's requests to the admin API, a reload
// among them.
const adminTimeout = time.Minute

// adminAPI is Caddy's admin API, spoken as `caddy reload --address` does.
type adminAPI struct {
	address string // as given, for messages
	base    string // the URL of its root, "http://localhost:2019"
	origin  string // the Origin header Caddy's own commands send; empty on a socket
	client  *http.Client
}

// newAdminAPI takes the address of the admin API: host:port (":2019" is
// localhost's), an http:// or https:// URL, or unix/PATH, a Unix socket,
// as Caddy's `admin` option writes them.
func newAdminAPI(address string) (*adminAPI, error) {
	bad := fmt.Errorf("--address %q: want host:port (%s), a URL (http://localhost:2019) or unix/PATH, as Caddy's `admin` option gives it", address, caddyAdminDefault)
	api := &adminAPI{address: address}
	tr := &http.Transport{Proxy: nil} // the admin API is local, never behind a proxy
	switch {
	case strings.HasPrefix(address, "unix/"):
		// Caddy's socket address may end in permission bits, |0220.
		path, _, _ := strings.Cut(strings.TrimPrefix(address, "unix/"), "|")
		if path == "" {
			return nil, bad
		}
		api.base = "http://127.0.0.1" // any host: the socket is dialed
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	case strings.Contains(address, "://"):
		u, err := url.Parse(address)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return nil, bad
		}
		api.base = u.Scheme + "://" + u.Host
		api.origin = api.base
	default:
		host, port, err := net.SplitHostPort(address)
		if err != nil || port == "" {
			return nil, bad
		}
		if host == "" {
			host = "localhost"
		}
		api.base = "http://" + net.JoinHostPort(host, port)
		api.origin = api.base
	}
	api.client = &http.Client{
		Transport: tr,
		// A redirect is never the admin API's answer to a change, and
		// following it would turn the change into a GET.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return api, nil
}

// adminError is an answer of the admin API other than 2xx.
type adminError struct {
	address, method, path string
	status                int
	// message is the API's own, its "error"; empty when the answer was
	// not the admin API's.
	message string
}

func (e *adminError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("%s is not Caddy's admin API: it answered %s %s with HTTP %d (is --address the address of Caddy's `admin` option?)", e.address, e.method, e.path, e.status)
	}
	return fmt.Sprintf("Caddy's admin API answered %s %s with HTTP %d: %s", e.method, e.path, e.status, e.message)
}

// call sends method to path, with in as JSON unless nil, and returns the
// answer's body and headers. An answer other than 2xx is an *adminError.
func (a *adminAPI) call(ctx context.Context, method, path string, in any, header http.Header) ([]byte, http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(req.Header, header)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.origin != "" {
		req.Header.Set("Origin", a.origin)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the method and URL
		}
		return nil, nil, fmt.Errorf("cannot reach Caddy's admin API at %s (%v): is Caddy running with its admin API on %s? pass --address as its `admin` option gives it", a.address, err, a.address)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer of Caddy's admin API at %s: %w", a.address, err)
	}
	if resp.StatusCode/100 == 2 {
		return answer, resp.Header, nil
	}
	var apiErr struct {
		Error string `json:"error"`
	}
	json.Unmarshal(answer, &apiErr) // an answer that is not the API's leaves it empty
	return nil, nil, &adminError{address: a.address, method: method, path: path, status: resp.StatusCode, message: apiErr.Error}
}

// get reads the JSON at path into out.
func (a *adminAPI) get(ctx context.Context, path string, out any) error {
	body, _, err := a.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s is not Caddy's admin API: its answer to GET %s is not its config (%v)", a.address, path, err)
	}
	return nil
}

// tunnel returns the config of tunnel name, and the ETag that makes a
// change of it conditional on its being unchanged.
func (a *adminAPI) tunnel(ctx context.Context, name string) (json.RawMessage, string, error) {
	body, header, err := a.call(ctx, http.MethodGet, tunnelsPath+name, nil, nil)
	if err != nil {
		return nil, "", err
	}
	if body = bytes.TrimSpace(body); string(body) == "null" {
		return nil, "", errNoTunnel
	}
	return body, header.Get("Etag"), nil
}

// status reads the clients of the inlets admin route.
func (a *adminAPI) status(ctx context.Context) (status.Status, error) {
	var st status.Status
	body, _, err := a.call(ctx, http.MethodGet, "/inlets/status", nil, nil)
	var aerr *adminError
	if errors.As(err, &aerr) && aerr.status == http.StatusNotFound {
		return st, fmt.Errorf("Caddy at %s has no /inlets/status: is it built with caddy-inlets?", a.address)
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("the answer of %s to GET /inlets/status is not the inlets status: %v", a.address, err)
	}
	return st, nil
}
