#!/usr/bin/env bash
# `make bench`: the benchmarks (never part of the tests). Same set-up as the tests, then
# each benchmark inside the namespace, where the guests are reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${1:-nbcloud-test}

bash scripts/setup.sh
.venv/bin/nbcloud host up --netns "$NETNS"
.venv/bin/nbcloud image build tiny
for bench in boot count plan; do
    ip netns exec "$NETNS" .venv/bin/python "bench/$bench.py"
done
