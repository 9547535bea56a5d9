#!/usr/bin/env bash
# The README's test command (`make test`): set up this machine, bring the host up in a
# test network namespace, build the tiny image, and run every test tier inside the
# namespace (guest addresses are reachable only there).
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${1:-nbcloud-test}

bash scripts/setup.sh
.venv/bin/nbcloud host up --netns "$NETNS"
.venv/bin/nbcloud image build tiny
# The slow tier boots it; built here because the mirror is not reachable in the namespace.
.venv/bin/nbcloud image build debian
ip netns exec "$NETNS" .venv/bin/nbcloud doctor || true   # informational
exec ip netns exec "$NETNS" .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests --nbval-lax notebooks
