package handler

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// OfflineRetryAfter is the Retry-After of a 503 for a host whose tunnel
// has no client connected: about how long a client takes to come back
// after a restart of its own or of the server.
const OfflineRetryAfter = 10 * time.Second

// What a refused or unanswered visitor's request tells handle_errors, in
// {http.vars.inlets.host} and {http.vars.inlets.reason}: the request's
// host, and why ("offline", "address", "rate").
//
// varChecked names the tunnel whose policy the handler has held a
// request to, so that the transport does not hold it to that one again.
const (
	varHost    = "inlets.host"
	varReason  = "inlets.reason"
	varChecked = "inlets.visitor_checked"

	reasonOffline = "offline"
)

// visitorRefused holds a request to its host's tunnel's visitors policy:
// it returns whether the request was refused (and answered, or handed to
// handle_errors through err).
func (h *Handler) visitorRefused(w http.ResponseWriter, r *http.Request, owner string, p *registry.VisitorPolicy, label string, start time.Time) (bool, error) {
	if p == nil {
		return false, nil
	}
	addr := clientAddr(r)
	reason, wait := h.reg.RefuseVisitor(owner, p, registry.VisitRequest, "http", addr)
	if reason == "" {
		return false, nil
	}
	host := tunnel.HostOnly(r.Host)
	status, msg := refusal(reason, addr, host, wait)
	metrics.HTTPRequest(status, label, r.Method, time.Since(start))
	return true, answerVisitor(w, r, status, wait, host, reason, msg)
}

// refusal is the status and text of a request the visitors policy
// refused for reason (RefusedRate, or an address the lists refuse),
// whichever of the handler and the transport refused it.
func refusal(reason string, addr netip.Addr, host string, wait time.Duration) (int, string) {
	if reason == registry.RefusedRate {
		return http.StatusTooManyRequests, fmt.Sprintf("429 Too Many Requests: too many requests to %s from your address: wait %ss", host, retryAfter(wait))
	}
	return http.StatusForbidden, fmt.Sprintf("403 Forbidden: visitors from %s may not visit %s", addr, host)
}

// serveOffline answers a request for a host a tunnel owns whose clients
// are all away: 503 with Retry-After, so that a load balancer in front
// fails over and a browser comes back.
func serveOffline(w http.ResponseWriter, r *http.Request, start time.Time) error {
	host := tunnel.HostOnly(r.Host)
	metrics.HTTPRequest(http.StatusServiceUnavailable, metrics.NoHost, r.Method, time.Since(start))
	return answerVisitor(w, r, http.StatusServiceUnavailable, OfflineRetryAfter, host, reasonOffline,
		fmt.Sprintf("503 Service Unavailable: %s is offline: no tunnel client serving it is connected; try again shortly", host))
}

// answerVisitor answers status with Retry-After (when wait is positive):
// through the site's handle_errors when it has one, with the host and
// the reason in variables, else with msg as text.
func answerVisitor(w http.ResponseWriter, r *http.Request, status int, wait time.Duration, host, reason, msg string) error {
	if wait > 0 {
		w.Header().Set("Retry-After", retryAfter(wait))
	}
	caddyhttp.SetVar(r.Context(), varHost, host)
	caddyhttp.SetVar(r.Context(), varReason, reason)
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(status, errors.New(msg))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
	return nil
}

// retryAfter is wait in whole seconds, rounded up, at least 1.
func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// clientAddr is the visitor's address as Caddy's client IP has it (its
// trusted_proxies decide whether X-Forwarded-For is believed).
func clientAddr(r *http.Request) netip.Addr {
	if s, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		if a, err := netip.ParseAddr(s); err == nil {
			return a.WithZone("").Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	return netip.Addr{}
}

// authenticateVisitor has the tunnel's HTTP authentication (Caddy's
// basic_auth and forward_auth, as the tunnel's visitors block sets them)
// decide on the request first: a request it lets through goes on to the
// tunnel; one it answers itself (401, or the service's answer) is counted
// refused, reason "auth".
func (h *Handler) authenticateVisitor(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, auth caddyhttp.MiddlewareHandler, owner string, routes []registry.Route, label string, start time.Time) error {
	reached := false
	rec := caddyhttp.NewResponseRecorder(w, nil, nil)
	err := auth.ServeHTTP(rec, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		reached = true
		return h.serveTunnel(w, r, next, owner, routes, label, start)
	}))
	if !reached {
		// A 4xx is the authentication's refusal; anything else (the
		// forward_auth service down, say) is the server's failure, not
		// the visitor's.
		status := responseStatus(rec, err)
		if status >= 400 && status < 500 {
			metrics.VisitorRefused(owner, "http", registry.RefusedAuth)
		}
		metrics.HTTPRequest(status, label, r.Method, time.Since(start))
	}
	return err
}
