package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_dataplane_requests_total",
		Help: "total HTTP requests processed",
	}, []string{"code", "host", "method"})
	httpDurations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_dataplane_request_duration_seconds",
		Help:    "Seconds spent serving HTTP requests.",
		Buckets: prometheus.DefBuckets,
	}, []string{"code", "host", "method"})
)

// NoHost is the host label of requests that no client served: the 502s
// answered because no client announced the request's Host. It cannot be
// an announced host, and keeps visitors' Host headers out of the labels.
const NoHost = ""

// HTTPRequest records one request of the HTTP data plane: answered with
// code, after d, for the announced host pattern that matched it (never
// the request's own Host, which visitors choose), with method folded to
// the standard methods or "OTHER". A request for a host no client serves
// any more (one that ended after its client left) is not recorded.
func HTTPRequest(code int, host, method string, d time.Duration) {
	if s, ok := httpSeriesSet.get(host, seriesKey{code: code, host: host, method: foldMethod(method)}); ok {
		s.requests.Inc()
		s.duration.Observe(d.Seconds())
	}
}

// HostServed starts the series of a host pattern: the registry calls it
// when a client first announces the pattern.
func HostServed(host string) { httpSeriesSet.serve(host) }

// HostUnserved deletes the series of a host pattern: the registry calls
// it when the last client announcing it has gone.
func HostUnserved(host string) { httpSeriesSet.unserve(host) }

// seriesKey names one series of each HTTP data-plane metric.
type seriesKey struct {
	code         int
	host, method string
}

type httpSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// httpSeriesSet holds the series of the hosts served. Hosts are announced
// patterns, and codes and methods are few, so it stays small.
var httpSeriesSet = newSeriesSet(NoHost, func(k seriesKey) httpSeries {
	code := codeLabel(k.code)
	return httpSeries{
		requests: httpRequests.WithLabelValues(code, k.host, k.method),
		duration: httpDurations.WithLabelValues(code, k.host, k.method),
	}
}, func(k seriesKey) {
	code := codeLabel(k.code)
	httpRequests.DeleteLabelValues(code, k.host, k.method)
	httpDurations.DeleteLabelValues(code, k.host, k.method)
})

// foldMethod returns the method if it is one of HTTP's standard methods,
// and "OTHER" otherwise, so that visitors cannot mint label values.
func foldMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodConnect,
		http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// codeLabels holds the label of every valid status code, made once.
var codeLabels = func() (l [600]string) {
	for i := 100; i < len(l); i++ {
		l[i] = strconv.Itoa(i)
	}
	return
}()

func codeLabel(code int) string {
	if code >= 100 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// visitorsRefused counts the visitors a tunnel's visitors policy refused,
// by tunnel, transport (http, tcp, udp, tls) and reason (address, rate,
// auth).
var visitorsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "dataplane_visitors_refused_total",
	Help: "visitors a tunnel's visitors policy refused (requests, connections, UDP flows), by tunnel, transport and reason",
}, []string{"tunnel", "transport", "reason"})

// VisitorRefused counts a visitor refused by tunnel's policy.
func VisitorRefused(tunnel, transport, reason string) {
	visitorsRefused.WithLabelValues(tunnel, transport, reason).Inc()
}

// ForgetVisitorsTunnel drops the series of a tunnel that no longer
// exists, so that deleted tunnels leave none behind.
func ForgetVisitorsTunnel(tunnel string) {
	visitorsRefused.DeletePartialMatch(prometheus.Labels{"tunnel": tunnel})
}
