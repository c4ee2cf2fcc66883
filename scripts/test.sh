#!/usr/bin/env bash
# The test suite: formatting, vet, the Go tests under the race detector,
# the example configs, the end-to-end scripts against the built binaries,
# and the benchmarks run once each (no timing asserted). `.ci/run`
# installs what it needs and runs this.
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

# Every fuzz target, briefly: the seeds already ran above as unit tests;
# this looks a little further. scripts/fuzz.sh runs them longer.
step "scripts/fuzz.sh (each target ${FUZZTIME:=3s})"
FUZZTIME=$FUZZTIME scripts/fuzz.sh

step "scripts/check-links.py (every relative link of the docs resolves)"
python3 scripts/check-links.py README.md docs/*.md xcaddy.md BENCHMARKS.md

for script in scripts/check-*.sh scripts/e2e-*.sh; do
	[ -e "$script" ] || continue
	step "$script"
	"$script"
done

# The benchmarks cannot rot: every Go benchmark runs once, and the harness
# runs each scenario once, briefly. Neither asserts any timing.
step "go test -bench (each benchmark once)"
go test -run '^$' -bench . -benchtime 1x ./...

step "bench/run.sh --quick"
bench_out=$(mktemp -d)
bench/run.sh --quick --out "$bench_out/BENCHMARKS.md" >"$bench_out/summary.md" ||
	{ cat "$bench_out/summary.md"; rm -rf "$bench_out"; exit 1; }
rm -rf "$bench_out"

echo
echo "all tests passed"
