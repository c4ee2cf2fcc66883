#!/usr/bin/env bash
# The test suite: formatting, vet, the Go tests under the race detector,
# the example configs, and the end-to-end scripts against the built
# binaries. `.ci/run` installs what it needs and runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step gofmt
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step go vet
go vet ./...

step build
mkdir -p bin
go build -o bin/caddy ./cmd/caddy
go build -o bin/inlets ./cmd/inlets

step "go test -race"
go test -race -count=1 -timeout 30m ./...

for script in scripts/check-*.sh scripts/e2e-*.sh; do
	[ -e "$script" ] || continue
	step "$script"
	"$script"
done

echo
echo "all tests passed"
