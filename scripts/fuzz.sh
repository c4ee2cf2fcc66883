#!/usr/bin/env bash
# Runs every Go fuzz target for a while: FUZZTIME each (default 5s), one
# `go test -fuzz` per target, since go test fuzzes one target per run.
# Targets are found by name: every `func FuzzXxx` in a *_test.go file.
# A failing input is written under the package's testdata/fuzz/FuzzXxx/;
# keep it there, as part of the seed corpus, once the bug is fixed.
#
#   FUZZTIME=1m scripts/fuzz.sh              # every target, a minute each
#   scripts/fuzz.sh FuzzReadFrame FuzzConnWrite   # only these
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# targets prints "package-dir target" for every fuzz target.
targets() {
	find . -name '*_test.go' -not -path './.*' -not -path '*/vendor/*' -print0 |
		sort -z |
		while IFS= read -r -d '' file; do
			{ grep -oE '^func Fuzz[A-Za-z0-9_]*' "$file" || true; } | sed 's/^func //' |
				while read -r name; do
					printf '%s %s\n' "$(dirname "$file")" "$name"
				done
		done
}

mapfile -t all < <(targets)
if [ "${#all[@]}" -eq 0 ]; then
	echo "no fuzz targets found" >&2
	exit 1
fi

# corpus lists a target's seed corpus, to see whether a run added to it.
corpus() { ls "$1/testdata/fuzz/$2" 2>/dev/null || true; }

# flaked says whether a failed run is go1.26's fuzztime race
# (golang/go#75804): the coordinator reports its own deadline as the
# failure, at fuzztime's end, and writes no failing input.
flaked() {
	grep -qx '    context deadline exceeded' "$log" &&
		! grep -q 'Failing input written' "$log" &&
		[ "$(corpus "$1" "$2")" = "$3" ]
}

failed=()
ran=0
start=$SECONDS
for entry in "${all[@]}"; do
	pkg=${entry% *}
	name=${entry#* }
	if [ "$#" -gt 0 ] && ! printf '%s\n' "$@" | grep -x "$name" >/dev/null; then
		continue
	fi
	ran=$((ran + 1))
	t0=$SECONDS
	result=FAIL note=
	for try in 1 2; do
		before=$(corpus "$pkg" "$name")
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			result=ok
			break
		fi
		if ! flaked "$pkg" "$name" "$before"; then
			result=FAIL
			break
		fi
		# The deadline race: no input failed. Run once more; if it
		# races again, the target did not fail either.
		result=ok
		note="  (golang/go#75804 fuzztime deadline race in $try of 2 runs; no failing input)"
	done
	if [ "$result" = FAIL ]; then
		printf 'FAIL  %-28s %-22s %3ds\n' "$name" "$pkg" $((SECONDS - t0))
		sed 's/^/      /' "$log"
		failed+=("$pkg $name")
	else
		printf 'ok    %-28s %-22s %3ds%s\n' "$name" "$pkg" $((SECONDS - t0)) "$note"
	fi
done

if [ "$ran" -eq 0 ]; then
	echo "no fuzz target matches: $*" >&2
	exit 1
fi
echo "$ran targets fuzzed for $fuzztime each in $((SECONDS - start))s"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "failed:"
	printf '  %s\n' "${failed[@]}"
	echo "the failing inputs are under each package's testdata/fuzz/"
	exit 1
fi
