package handler

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// statusRecorder notes the status code of a response for the metrics. It
// changes nothing else: through Unwrap (from ResponseWriterWrapper),
// http.NewResponseController still reaches the Flusher and Hijacker
// underneath, which reverse_proxy needs for streaming and websockets and
// the control plane for upgrading clients.
type statusRecorder struct {
	caddyhttp.ResponseWriterWrapper
	status int
}

func newStatusRecorder(w http.ResponseWriter) *statusRecorder {
	return &statusRecorder{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
}

// WriteHeader notes the first final status (or 101, for an upgrade);
// informational responses such as 103 Early Hints come before it.
func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriterWrapper.ReadFrom(src)
}

// StatusOr is the status written so far, or def when none was.
func (r *statusRecorder) StatusOr(def int) int {
	if r.status == 0 {
		return def
	}
	return r.status
}

// Interface guards
var _ http.ResponseWriter = (*statusRecorder)(nil)
