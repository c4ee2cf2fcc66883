#!/usr/bin/env bash
# A working tunnel on localhost, in one command: builds Caddy with the
# plugin and the inlets client, starts a demo upstream (the "private"
# service), Caddy with examples/single-site.Caddyfile, and a client; then
# sends a request through the tunnel and shows it. Ctrl-C stops it all.
# At the end it prints where its token is and the client command that
# exposes a service of your own through the demo server.
#
#   scripts/demo.sh          keep running after the request
#   scripts/demo.sh --once   stop after the request (CI runs this)
#
# Ports: 8123 (Caddy: clients and visitors), 2019 (Caddy's admin API),
# 3000 (the demo upstream). Needs Go and curl.
#
# The token is kept in bin/inlets-demo.token (bin/ is git-ignored), after
# the demo stops too, and the next run reuses it: a client you started
# with --token-file bin/inlets-demo.token reconnects when the demo is
# started again.
set -euo pipefail
cd "$(dirname "$0")/.."

once=false
[ "${1:-}" = "--once" ] && once=true
token_file=$PWD/bin/inlets-demo.token
running=false

work=$(mktemp -d)
pids=()
cleanup() {
	[ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
	if $running; then
		echo
		echo "Stopped. The token stays in $token_file for the next run."
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for DESCRIPTION COMMAND...: run COMMAND until it succeeds, for 20s.
wait_for() {
	local what=$1; shift
	for _ in $(seq 200); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "timed out waiting for $what; logs:" >&2
	tail -n 20 "$work"/*.log >&2
	exit 1
}

. scripts/lib.sh
require_free 8123 "Caddy's, for clients and visitors, as in examples/single-site.Caddyfile"
require_free 2019 "Caddy's admin API"
require_free 3000 "the demo upstream"

echo "== building bin/caddy (Caddy + caddy-inlets) and bin/inlets (the client)"
mkdir -p bin
go build -o bin/caddy ./cmd/caddy
go build -o bin/inlets ./cmd/inlets

# The token of the last run, or a new one (32 hex digits).
token=
[ ! -f "$token_file" ] || token=$(tr -d '[:space:]' <"$token_file")
case "$token" in
"" | *[!0-9a-f]*)
	token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	rm -f "$token_file"
	(umask 077 && printf '%s\n' "$token" >"$token_file")
	;;
esac
export INLETS_TOKEN=$token

echo "== demo upstream on 127.0.0.1:3000 (the service on your private network)"
bin/caddy respond --listen 127.0.0.1:3000 \
	--header "Content-Type: text/plain; charset=utf-8" \
	"Hello from the private network (127.0.0.1:3000), through caddy-inlets!" >"$work/upstream.log" 2>&1 &
pids+=($!)

echo "== Caddy with examples/single-site.Caddyfile on :8123"
bin/caddy run --config examples/single-site.Caddyfile --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)
wait_for "Caddy's admin API" curl -fsS http://localhost:2019/config/

echo "== inlets client: app.example.com -> http://127.0.0.1:3000"
bin/inlets http client --url ws://127.0.0.1:8123 --token-file "$token_file" \
	--upstream app.example.com=http://127.0.0.1:3000 >"$work/client.log" 2>&1 &
pids+=($!)
wait_for "the tunnel" curl -fsS -H 'Host: app.example.com' http://127.0.0.1:8123/

echo
echo "$ curl -i -H 'Host: app.example.com' http://127.0.0.1:8123/"
curl -sS -i -H 'Host: app.example.com' http://127.0.0.1:8123/
echo
echo

# own_service tells how to expose a service of your own, say one on
# 127.0.0.1:8080, through the demo server.
own_service() {
	cat <<MSG
The demo's token is in $token_file (kept after the demo stops; its next run reuses it).
To expose a service of your own, say one on 127.0.0.1:8080, run in another terminal$1:
  $PWD/bin/inlets http client --url ws://127.0.0.1:8123 --token-file $token_file \\
    --upstream myapp.localhost=http://127.0.0.1:8080
  curl -H 'Host: myapp.localhost' http://127.0.0.1:8123/
MSG
}

if $once; then
	own_service ", while scripts/demo.sh (without --once) runs"
	exit 0
fi
cat <<MSG
The tunnel is up. Try:
  curl -H 'Host: app.example.com' http://127.0.0.1:8123/
  curl -H 'Host: nobody.example.com' http://127.0.0.1:8123/    # no client: 502
Logs: $work/{caddy,client,upstream}.log    Ctrl-C stops everything.

MSG
own_service ""
running=true
wait
