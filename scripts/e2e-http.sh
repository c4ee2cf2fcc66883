#!/usr/bin/env bash
# End to end with the built binaries and curl: split control/data sites, a
# file downloaded through the tunnel and checked with sha256sum, refused
# tokens, 502s, `caddy reload` keeping the client connected, and a killed
# client replaced. Also runs scripts/demo.sh --once (the README's first
# command).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/caddy ] && [ -x bin/inlets ] || { go build -o bin/caddy ./cmd/caddy; go build -o bin/inlets ./cmd/inlets; }

echo "-- scripts/demo.sh --once"
scripts/demo.sh --once >/tmp/inlets-demo.out 2>&1 || { cat /tmp/inlets-demo.out; exit 1; }
grep -q "Hello from the private network" /tmp/inlets-demo.out || { cat /tmp/inlets-demo.out; echo "FAIL: the demo's request did not go through"; exit 1; }

work=$(mktemp -d)
pids=()
client_pid=
cleanup() {
	[ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
	[ -z "$client_pid" ] || kill "$client_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; echo "--- caddy log"; tail -n 30 "$work/caddy.log"; echo "--- client log"; tail -n 30 "$work"/client*.log 2>/dev/null; exit 1; }
ok() { echo "ok: $*"; }
# until_ok DESCRIPTION COMMAND...: retry COMMAND for up to 20s.
until_ok() {
	local what=$1; shift
	for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	fail "timed out: $what"
}

# Ports: free ones, picked now, unless given (E2E_*_PORT).
. scripts/lib.sh
admin=127.0.0.1:${E2E_ADMIN_PORT:-$(free_port)}
control=${E2E_CONTROL_PORT:-$(free_port)}
data=${E2E_DATA_PORT:-$(free_port)}
files=${E2E_FILES_PORT:-$(free_port)}
for port in "${admin#*:}" "$control" "$data" "$files"; do require_free "$port" "one of this test's"; done
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$token" >"$work/token"
export INLETS_TOKEN=$token

mkdir "$work/files"
head -c $((20 << 20)) /dev/urandom >"$work/files/blob.bin"
want_sha=$(sha256sum <"$work/files/blob.bin" | cut -d' ' -f1)
bin/caddy file-server --listen "127.0.0.1:$files" --root "$work/files" >"$work/files.log" 2>&1 &
pids+=($!)

caddyfile() { # $1: extra line in the data site
	cat <<CADDY
{
	admin $admin
}
:$control {
	inlets control {
		token {env.INLETS_TOKEN}
	}
	respond 404
}
:$data {
	$1
	inlets data
}
CADDY
}
caddyfile "" >"$work/Caddyfile"
bin/caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)
until_ok "Caddy's admin API" curl -fsS "http://$admin/config/"

start_client() { # $1: log name
	bin/inlets http client --url "ws://127.0.0.1:$control" --token-file "$work/token" --id e2e-client \
		--upstream "files.example.com=http://127.0.0.1:$files" >"$work/$1.log" 2>&1 &
	client_pid=$!
}
start_client client
until_ok "the tunnel" curl -fsS -o /dev/null -H 'Host: files.example.com' "http://127.0.0.1:$data/blob.bin"
ok "client connected"

got_sha=$(curl -fsS -H 'Host: files.example.com' "http://127.0.0.1:$data/blob.bin" | sha256sum | cut -d' ' -f1)
[ "$got_sha" = "$want_sha" ] || fail "20 MiB download through the tunnel: sha256 $got_sha, want $want_sha"
ok "20 MiB download through the tunnel has the upstream's sha256"

code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Host: files.example.com' "http://127.0.0.1:$data/connect")
[ "$code" = 404 ] || fail "/connect on the data site should reach the upstream (its 404), got $code"
ok "/connect on the data site belongs to the upstream"

body=$(curl -sS -H 'Host: nobody.example.com' "http://127.0.0.1:$data/")
case "$body" in *"no tunnel client is connected for nobody.example.com"*) ;; *) fail "no client for a host: $body" ;; esac
ok "no client for a host: 502 with a reason"

code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$control/connect")
[ "$code" = 401 ] || fail "no token: $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "http://127.0.0.1:$control/connect")
[ "$code" = 401 ] || fail "wrong token: $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$control/connect")
[ "$code" = 400 ] || fail "right token without a websocket upgrade: $code"
ok "control plane: 401 without or with a wrong token, 400 without an upgrade"

bin/inlets http client --url "ws://127.0.0.1:$control" --token wrong-token \
	--upstream "x.example.com=http://127.0.0.1:1" >"$work/client-wrong.log" 2>&1 &
wrong_pid=$!
until_ok "the wrong-token client's message" grep -q "HTTP 401): inlets: missing or wrong token" "$work/client-wrong.log"
kill "$wrong_pid"
ok "a client with a wrong token says so"

caddyfile "header X-Reloaded yes" >"$work/Caddyfile"
bin/caddy reload --config "$work/Caddyfile" --adapter caddyfile --address "$admin" >>"$work/caddy.log" 2>&1
until_ok "the reloaded config" sh -c "curl -fsS -o /dev/null -D - -H 'Host: files.example.com' http://127.0.0.1:$data/blob.bin | grep -qi '^X-Reloaded: yes'"
[ "$(grep -c 'msg=connected' "$work/client.log")" = 1 ] || fail "the client reconnected across caddy reload"
ok "caddy reload: the client stayed connected and requests go through"

kill -9 "$client_pid"
wait "$client_pid" 2>/dev/null || true
client_pid=
until_ok "502 after the client died" sh -c "[ \$(curl -sS -o /dev/null -w '%{http_code}' -H 'Host: files.example.com' http://127.0.0.1:$data/blob.bin) = 502 ]"
start_client client-restarted
until_ok "the restarted client" curl -fsS -o /dev/null -H 'Host: files.example.com' "http://127.0.0.1:$data/blob.bin"
ok "a killed client gives 502, a restarted one serves again, the server untouched"

bin/caddy inlets version | grep "^caddy inlets " >/dev/null || fail "caddy inlets version"
ok "caddy inlets version"
echo "e2e-http: all checks passed"
