package metrics

import "github.com/prometheus/client_golang/prometheus"

// onDemand counts on-demand TLS's questions to tls.permission.inlets, by
// the tunnel that owns the name and the answer. Its series are bounded by
// the config's tunnels (four each, and those of tunnel "": names no
// tunnel owns, and the clients of a handler's own token), and a deleted
// tunnel's are deleted.
var onDemand = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tls_ondemand_certificates_total",
	Help: "total count of names on-demand TLS asked a certificate for, by owning tunnel and result: order (allowed, the CA is asked), stored (allowed, the certificate is in storage), over_budget and refused (denied)",
}, []string{"tunnel", "result"})

// Results of an on-demand certificate question, in the result label of
// tls_ondemand_certificates_total.
const (
	// OnDemandOrder: allowed, and counted in the tunnel's budget: the
	// CA is asked for a certificate.
	OnDemandOrder = "order"
	// OnDemandStored: allowed; the certificate is in storage already.
	OnDemandStored = "stored"
	// OnDemandOverBudget: denied, the tunnel has ordered its
	// on_demand_per_hour (or 5 in the last minute).
	OnDemandOverBudget = "over_budget"
	// OnDemandRefused: denied, no connected client serves the name in a
	// way that allows a certificate.
	OnDemandRefused = "refused"
)

// OnDemandCertificate counts one answer about a name tunnel owns.
func OnDemandCertificate(tunnel, result string) {
	onDemand.WithLabelValues(tunnel, result).Inc()
}

// ForgetOnDemandTunnel deletes the series of a tunnel the config no
// longer has.
func ForgetOnDemandTunnel(tunnel string) {
	onDemand.DeletePartialMatch(prometheus.Labels{"tunnel": tunnel})
}
