#!/usr/bin/env bash
# Every example config must load: each Caddyfile adapts and validates, its
# JSON twin is exactly what adapting it gives, and each JSON validates;
# each client config file passes `inlets client --check`.
set -euo pipefail
cd "$(dirname "$0")/.."
caddy=${CADDY:-bin/caddy}
[ -x "$caddy" ] || go build -o "$caddy" ./cmd/caddy
inlets=${INLETS:-bin/inlets}
[ -x "$inlets" ] || go build -o "$inlets" ./cmd/inlets

# Placeholders the examples use, so that provisioning (validation) succeeds.
export INLETS_TOKEN=example-token INLETS_LAB_TOKEN=example-lab-token

status=0
for caddyfile in examples/*.Caddyfile; do
	json=${caddyfile%.Caddyfile}.json
	echo "-- $caddyfile"
	if ! out=$("$caddy" adapt --config "$caddyfile" --validate 2>&1 >/dev/null); then
		echo "$out"; echo "FAIL: $caddyfile does not adapt and validate"; status=1; continue
	fi
	if [ ! -f "$json" ]; then
		echo "FAIL: $caddyfile has no JSON twin $json"; status=1; continue
	fi
	if ! diff -u "$json" <("$caddy" adapt --config "$caddyfile" --pretty 2>/dev/null); then
		echo "FAIL: $json is not what $caddyfile adapts to (regenerate: $caddy adapt --config $caddyfile --pretty > $json)"
		status=1
	fi
done
for json in examples/*.json; do
	case "$json" in *dashboard*) continue ;; esac
	[ -f "${json%.json}.Caddyfile" ] || grep -q '"apps"' "$json" || continue
	echo "-- $json"
	if ! out=$("$caddy" validate --config "$json" 2>&1); then
		echo "$out"; echo "FAIL: $json does not validate"; status=1
	fi
done
for file in examples/*.yaml; do
	grep -q '^url:' "$file" || continue # the Prometheus examples
	echo "-- $file"
	if ! out=$("$inlets" client --config "$file" --check 2>&1); then
		echo "$out"; echo "FAIL: $file does not pass inlets client --check"; status=1
	fi
done
exit $status
