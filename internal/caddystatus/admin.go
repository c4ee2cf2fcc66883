package caddystatus

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/status"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the admin.api.inlets module: GET /inlets/status on Caddy's
// admin endpoint answers with the same JSON as the control plane's
// /status, without a token, since the admin endpoint is local by default.
// Caddy routes every registered admin.api module on its admin endpoint; it
// needs no configuration.
//
// Caddy provisions admin modules before a config's apps, and whether or not
// the config has the inlets app: the module therefore reads the
// process-wide registry when asked, never the app.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.inlets",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// StatusPath is the admin API route of the status.
const StatusPath = "/inlets/status"

// Routes returns the admin routes of inlets.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: StatusPath, Handler: caddy.AdminHandlerFunc(serveStatus)}}
}

func serveStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return caddy.APIError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        fmt.Errorf("%s answers GET, not %s", StatusPath, r.Method),
		}
	}
	status.ServeJSON(w, Of(registry.Current()))
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
