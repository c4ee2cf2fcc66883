#!/usr/bin/env bash
# End to end with a real Prometheus (Debian's prometheus package): the built
# Caddy serves a tunnel's control plane over HTTPS (Caddy's internal CA) and
# its data plane over HTTP; a built inlets client connects; Prometheus
# scrapes the control plane with the bearer token and Caddy's admin endpoint,
# with the scrape config and alert rules of examples/ (only addresses, the
# token and the intervals changed). After N requests through the tunnel and
# one refused login, Prometheus's HTTP API must show up == 1 for both jobs
# and the counts sent; every query of the example Grafana dashboard must run.
#
# Ports: free ones, picked at the start, unless given with the environment
# variables E2E_PROM_ADMIN_PORT (Caddy's admin API), E2E_PROM_CONTROL_PORT,
# E2E_PROM_DATA_PORT, E2E_PROM_UPSTREAM_PORT and E2E_PROM_PORT (Prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/caddy ] && [ -x bin/inlets ] || { mkdir -p bin; go build -o bin/caddy ./cmd/caddy; go build -o bin/inlets ./cmd/inlets; }
if ! command -v prometheus >/dev/null; then
	echo "FAIL: prometheus is missing: apt-get install prometheus (.ci/run installs it)"
	exit 1
fi

. scripts/lib.sh
admin_port=${E2E_PROM_ADMIN_PORT:-$(free_port)}
control=${E2E_PROM_CONTROL_PORT:-$(free_port)}
data=${E2E_PROM_DATA_PORT:-$(free_port)}
upstream=${E2E_PROM_UPSTREAM_PORT:-$(free_port)}
prom=${E2E_PROM_PORT:-$(free_port)}
requests=${E2E_PROM_REQUESTS:-7}

work=$(mktemp -d)
pids=()
cleanup() {
	[ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "FAIL: $*"
	for log in "$work"/*.log; do
		echo "--- $(basename "$log")"
		tail -n 25 "$log"
	done
	exit 1
}
ok() { echo "ok: $*"; }
# until_ok DESCRIPTION COMMAND...: retry COMMAND every 0.2s for up to 60s.
until_ok() {
	local what=$1; shift
	local deadline=$((SECONDS + 60))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "timed out after 60s: $what"
		sleep 0.2
	done
}

for port in "$admin_port" "$control" "$data" "$upstream" "$prom"; do require_free "$port" "one of this test's"; done

token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$token" >"$work/token"
export INLETS_TOKEN=$token
# Caddy's storage (its internal CA) goes in the temporary directory.
export XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config

bin/caddy respond --listen "127.0.0.1:$upstream" "Hello from the private network" >"$work/upstream.log" 2>&1 &
pids+=($!)

cat >"$work/Caddyfile" <<CADDY
{
	admin localhost:$admin_port
	skip_install_trust
	auto_https disable_redirects
}
# Clients and Prometheus: the control plane, over HTTPS.
https://127.0.0.1:$control {
	tls internal
	inlets control {
		token {env.INLETS_TOKEN}
	}
	respond 404
}
# Visitors.
http://:$data {
	inlets data
}
CADDY
bin/caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)
until_ok "Caddy's admin API" curl -fsS "http://localhost:$admin_port/config/"
ca=$work/data/caddy/pki/authorities/local/root.crt
until_ok "Caddy's internal CA" test -s "$ca"
ok "Caddy serves the control plane on https://127.0.0.1:$control"

bin/inlets http client --url "wss://127.0.0.1:$control" --token-file "$work/token" --tls-ca "$ca" \
	--id e2e-prometheus --upstream "app.example.com=http://127.0.0.1:$upstream" >"$work/client.log" 2>&1 &
pids+=($!)
status() { bin/inlets status --url "wss://127.0.0.1:$control" --token-file "$work/token" --tls-ca "$ca" "$@"; }
client_listed() { status | grep '^e2e-prometheus ' >/dev/null; }
until_ok "the client in inlets status" client_listed
echo "$ inlets status --url wss://127.0.0.1:$control --token-file token --tls-ca root.crt"
status
ok "the client is connected, as inlets status shows"

# Prometheus with the example's scrape config and rules.
sed -e "s/scrape_interval: 15s/scrape_interval: 1s/" \
	-e "s/evaluation_interval: 15s/evaluation_interval: 1s/" \
	-e "s/'localhost:9090'/'127.0.0.1:$prom'/" \
	-e "s/'localhost:8123'/'127.0.0.1:$control'/" \
	-e "s/'localhost:2019'/'localhost:$admin_port'/" \
	-e "s/credentials: TOKEN/credentials: $token/" \
	examples/prometheus.yaml >"$work/prometheus.yaml"
cp examples/alerts.yaml "$work/"
for want in "scrape_interval: 1s" "'127.0.0.1:$control'" "'localhost:$admin_port'" "credentials: $token" "scheme: https" "job_name: inlets" "job_name: caddy"; do
	grep -qF "$want" "$work/prometheus.yaml" ||
		fail "examples/prometheus.yaml changed shape: '$want' is not in the derived config; update $0"
done
prometheus --config.file="$work/prometheus.yaml" --storage.tsdb.path="$work/tsdb" \
	--web.listen-address="127.0.0.1:$prom" >"$work/prometheus.log" 2>&1 &
pids+=($!)
until_ok "Prometheus" curl -fsS "http://127.0.0.1:$prom/-/ready"
ok "Prometheus runs with the example's scrape config on 127.0.0.1:$prom"

for _ in $(seq "$requests"); do
	body=$(curl -fsS -H 'Host: app.example.com' "http://127.0.0.1:$data/")
	[ "$body" = "Hello from the private network" ] || fail "request through the tunnel answered: $body"
done
ok "$requests requests through the tunnel"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" --cacert "$ca" "https://127.0.0.1:$control/connect")
[ "$code" = 401 ] || fail "a wrong token on /connect: HTTP $code"
ok "one refused login"

# query EXPR: Prometheus's answer to an instant query.
query() { curl -fsS -G "http://127.0.0.1:$prom/api/v1/query" --data-urlencode "query=$1"; }
# has_result EXPR: the query succeeds with at least one series.
has_result() { query "$1" | grep '"status":"success".*"result":\[{' >/dev/null; }
# expect EXPR: wait until EXPR, a comparison, holds in Prometheus.
expect() {
	local deadline=$((SECONDS + 60))
	until has_result "$1"; do
		if ((SECONDS >= deadline)); then
			echo "Prometheus answers $1 without its comparison:"
			query "${1% ==*}" || true
			echo
			fail "timed out after 60s waiting for $1"
		fi
		sleep 0.2
	done
	ok "Prometheus: $1"
}
sent='host="app.example.com",code="200",method="GET"'
expect 'up{job="inlets"} == 1'
expect 'up{job="caddy"} == 1'
expect "http_dataplane_requests_total{job=\"inlets\",$sent} == $requests"
expect "http_dataplane_request_duration_seconds_count{job=\"inlets\",$sent} == $requests"
expect "http_dataplane_requests_total{job=\"caddy\",$sent} == $requests"
expect 'http_controlplane_connected_gauge{job="inlets"} == 1'
expect 'tcp_controlplane_connected_gauge{job="inlets"} == 0'
expect 'http_controlplane_requests_total{job="inlets",code="401",path="/connect"} == 1'

rules=$(curl -fsS "http://127.0.0.1:$prom/api/v1/rules")
for alert in InletsNoHTTPClientConnected InletsNoTCPClientConnected InletsNoClientForRequestedHost InletsFailedAuthentication InletsHostErrorRatio; do
	grep -q "\"name\":\"$alert\"" <<<"$rules" || fail "Prometheus did not load the alert $alert from examples/alerts.yaml"
done
ok "Prometheus loaded the alert rules of examples/alerts.yaml"

# Every query of the example dashboard runs, with its variables filled in.
n=0
while IFS= read -r expr; do
	expr=${expr//\\\"/\"}
	expr=${expr//'$job'/inlets}
	expr=${expr//'$host'/.*}
	expr=${expr//'$__rate_interval'/1m}
	answer=$(query "$expr" 2>&1) || fail "the dashboard query $expr fails: $answer"
	grep -q '"status":"success"' <<<"$answer" || fail "the dashboard query $expr fails: $answer"
	n=$((n + 1))
done < <(sed -n 's/^ *"expr": "\(.*\)",\{0,1\}$/\1/p' examples/grafana-dashboard.json)
((n > 0)) || fail "found no queries in examples/grafana-dashboard.json"
ok "the $n queries of examples/grafana-dashboard.json run"
# The dashboard's requests-per-host panel has the host the requests went to.
expect 'sum by (host) (rate(http_dataplane_requests_total{job=~"inlets", host=~".*"}[1m])) and on (host) group by (host) (http_dataplane_requests_total{host="app.example.com"})'


echo "e2e-prometheus: all checks passed"
