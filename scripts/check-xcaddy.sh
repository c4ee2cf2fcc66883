#!/usr/bin/env bash
# Runs the commands of xcaddy.md as written, against a copy of this
# checkout: xcaddy (installed at a pinned version from the module proxy)
# builds Caddy with the plugin from the local directory, the build lists
# every inlets module, `go build ./cmd/caddy` does the same, and xcaddy's
# development mode starts Caddy with the example config through a
# directory-served module version.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

work=$(mktemp -d)
pid=
cleanup() {
	# xcaddy runs the Caddy it built as a child: stop both.
	[ -z "$pid" ] || { pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; }
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
# Pipes end in a grep that reads everything (>/dev/null, not -q): with
# pipefail, grep -q's early exit fails the writer with SIGPIPE, and the
# check with it, whenever the writer has more to write.

export GOBIN=$work/bin PATH=$work/bin:$PATH
go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5

# The checkout as xcaddy.md's `git clone` gives it: what is committed.
git -C "$repo" worktree add -q --detach "$work/caddy-inlets" HEAD 2>/dev/null ||
	cp -r "$repo" "$work/caddy-inlets"
cleanup_worktree() { git -C "$repo" worktree remove --force "$work/caddy-inlets" 2>/dev/null || true; }
trap 'cleanup_worktree; cleanup' EXIT

want="admin.api.inlets http.handlers.inlets http.reverse_proxy.transport.inlets http.reverse_proxy.upstreams.inlets inlets inlets_tcp layer4.handlers.inlets tls.permission.inlets"
modules() { "$1" list-modules | grep inlets | tr '\n' ' ' | sed 's/ $//'; }

echo "-- xcaddy build v2.11.9 --with github.com/caddy-inlets/caddy-inlets@v0.0.0-...=./caddy-inlets"
(cd "$work" && xcaddy build v2.11.9 \
	--with github.com/caddy-inlets/caddy-inlets@v0.0.0-00010101000000-000000000000=./caddy-inlets) >"$work/xcaddy-build.log" 2>&1 ||
	{ tail -20 "$work/xcaddy-build.log"; fail "xcaddy build from a local checkout"; }
[ "$(modules "$work/caddy")" = "$want" ] || fail "xcaddy's build lists: $(modules "$work/caddy")"
"$work/caddy" inlets version | grep '^caddy inlets ' >/dev/null || fail "caddy inlets version"
echo "ok: xcaddy build from a local checkout lists every inlets module"

echo "-- xcaddy build v2.11.9 --with ...caddy-inlets... --with github.com/mholt/caddy-l4@v0.1.2"
(cd "$work" && xcaddy build v2.11.9 --output "$work/caddy-l4" \
	--with github.com/caddy-inlets/caddy-inlets@v0.0.0-00010101000000-000000000000=./caddy-inlets \
	--with github.com/mholt/caddy-l4@v0.1.2) >"$work/xcaddy-l4.log" 2>&1 ||
	{ tail -20 "$work/xcaddy-l4.log"; fail "xcaddy build with caddy-l4"; }
"$work/caddy-l4" list-modules | grep -x layer4.matchers.tls >/dev/null || fail "the build with caddy-l4 lacks layer4.matchers.tls"
INLETS_TOKEN=x "$work/caddy-l4" adapt --config "$work/caddy-inlets/examples/tls-passthrough.Caddyfile" --validate >/dev/null 2>"$work/l4-adapt.log" ||
	{ tail -5 "$work/l4-adapt.log"; fail "examples/tls-passthrough.Caddyfile with the caddy-l4 build"; }
echo "ok: a build with caddy-l4 loads examples/tls-passthrough.Caddyfile"

echo "-- go build -o caddy ./cmd/caddy"
(cd "$work/caddy-inlets" && go build -o caddy ./cmd/caddy)
[ "$(modules "$work/caddy-inlets/caddy")" = "$want" ] || fail "go build's Caddy lists: $(modules "$work/caddy-inlets/caddy")"
echo "ok: go build ./cmd/caddy lists every inlets module"

echo "-- xcaddy -- run --config examples/single-site.Caddyfile (development mode)"
cd "$work/caddy-inlets"
v=v0.0.0-00010101000000-000000000000
d=$work/goproxy/github.com/caddy-inlets/caddy-inlets/@v
mkdir -p "$d" && echo $v >"$d/list" && cp go.mod "$d/$v.mod"
echo "{\"Version\":\"$v\"}" >"$d/$v.info"
. "$repo/scripts/lib.sh"
require_free 8123 "examples/single-site.Caddyfile's"
require_free 2019 "Caddy's admin API"
: >"$work/xcaddy-run.log"
XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config INLETS_TOKEN=dev \
	GOPROXY="file://$work/goproxy,$(go env GOPROXY)" GONOSUMDB=github.com/caddy-inlets/caddy-inlets \
	xcaddy -- run --config examples/single-site.Caddyfile >"$work/xcaddy-run.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
	grep -q "serving initial configuration" "$work/xcaddy-run.log" && break
	kill -0 "$pid" 2>/dev/null || { tail -20 "$work/xcaddy-run.log"; fail "xcaddy -- run exited"; }
	sleep 0.2
done
grep -q "serving initial configuration" "$work/xcaddy-run.log" || { tail -20 "$work/xcaddy-run.log"; fail "xcaddy -- run did not start Caddy within 2 minutes"; }
echo "ok: xcaddy -- run starts Caddy with the example config"
echo "check-xcaddy: xcaddy.md's commands run as written"
