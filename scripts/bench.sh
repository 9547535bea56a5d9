#!/usr/bin/env bash
# The benchmarks (never part of the tests), each inside the namespace where the guests are
# reachable. `make bench` first sets the machine and the host up (Makefile target `host`).
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${1:-nbcloud-test}

for bench in boot count plan; do
    ip netns exec "$NETNS" .venv/bin/python "bench/$bench.py"
done
