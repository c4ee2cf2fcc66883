#!/usr/bin/env bash
# The Prometheus examples are valid: the scrape config (with the alert
# rules it loads) passes `promtool check config`, the rules pass `promtool
# check rules`, and the rules' unit tests pass `promtool test rules`.
set -euo pipefail
cd "$(dirname "$0")/../examples"
if ! command -v promtool >/dev/null; then
	echo "FAIL: promtool is missing: apt-get install prometheus (.ci/run installs it)"
	exit 1
fi
promtool check config prometheus.yaml
promtool check rules alerts.yaml
promtool test rules alerts.test.yaml
echo "check-prometheus: the example scrape config and alert rules are valid"
