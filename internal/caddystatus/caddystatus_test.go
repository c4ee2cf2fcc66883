package caddystatus

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-inlets/caddy-inlets/status"
)

// Without a config that uses inlets there is no registry: the status still
// says what the server is.
func TestStatusWithoutARegistry(t *testing.T) {
	s := Of(nil)
	if s.Info.Mode != status.ModeNone || s.Clients == nil || len(s.Clients) != 0 || s.Info.StartTime.IsZero() || s.Info.Version == "" {
		t.Errorf("status without a registry: %+v", s)
	}
}

func TestAdminRouteServesJSONToGETOnly(t *testing.T) {
	routes := AdminAPI{}.Routes()
	if len(routes) != 1 || routes[0].Pattern != "/inlets/status" {
		t.Fatalf("routes: %+v", routes)
	}
	w := httptest.NewRecorder()
	if err := routes[0].Handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/inlets/status", nil)); err != nil {
		t.Fatal(err)
	}
	var s status.Status
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %v %q", err, w.Body.String())
	}
	err := routes[0].Handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodDelete, "/inlets/status", nil))
	var apiErr caddy.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusMethodNotAllowed || !strings.Contains(err.Error(), "answers GET") {
		t.Errorf("DELETE: %v", err)
	}
}
