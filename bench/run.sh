#!/usr/bin/env bash
# The benchmarks, in one command: caddy-inlets against serving directly,
# on loopback, written to BENCHMARKS.md (see docs/benchmarks.md).
#
#   bench/run.sh                     the full run (about 15 minutes, and 15
#                                    more for scenario link): BENCHMARKS.md
#   bench/run.sh --quick --out FILE  one short run of each scenario (about 2
#                                    minutes), to check they all work (CI)
#   bench/run.sh --only small,bulk   some scenarios (any of: small, bulk,
#                                    bodies, idle, concurrency, reconnect,
#                                    scale, tenants, udp, sni, fleet,
#                                    link, visitors, grpc)
#
# Scenario link puts a relay (internal/latency) between the tunnel
# clients and Caddy that delays each direction by half the round-trip
# time, 50 and 200 ms (--quick: 50 ms, with small transfers), and
# measures the first byte of new connections, downloads, and small
# requests beside a download, against the upstream reached through the
# same delays (about 5 minutes a run, mostly the 300 MB downloads and
# 200 sequential requests at 200 ms).
#
# Needs Go, and wrk, hey and iperf3 from Debian's packages; scenario udp
# also dnsmasq (dnsmasq-base) and dnsperf.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in wrk hey iperf3; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
	echo "bench/run.sh needs ${missing[*]}: apt-get install ${missing[*]}" >&2
	exit 1
fi

# Scenario 5 holds 10,000 connections open: each of the harness, Caddy,
# the client and the upstream has one descriptor per connection. Processes
# started by Go get the soft limit of this shell, so raise it here.
want=16384
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
	hard=$(ulimit -Hn)
	if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
		ulimit -n "$want"
	else
		ulimit -n "$hard"
		echo "warning: open files limited to $hard; the 10,000-connection scenario may fail" >&2
	fi
fi

echo "== building bin/caddy, bin/inlets and bin/inletsbench" >&2
mkdir -p bin
go build -o bin/caddy ./cmd/caddy
go build -o bin/inlets ./cmd/inlets
go build -o bin/inletsbench ./bench

exec bin/inletsbench "$@"
