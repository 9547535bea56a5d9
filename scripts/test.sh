#!/usr/bin/env bash
# Every test tier, inside the test network namespace (guest addresses are reachable only
# there). `make test` (the README's test command) first sets the machine up and brings the
# host up in that namespace with the tiny image (Makefile target `host`).
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${1:-nbcloud-test}

# The slow tier boots it; built here because the mirror is not reachable in the namespace.
.venv/bin/nbcloud image build debian
rc=0
ip netns exec "$NETNS" .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests --nbval-lax notebooks || rc=$?
# The same notebooks again on the session tier: an unprivileged user, qemu:///session,
# user-mode networking, no namespace of its own (loopback only).
bash scripts/session-tier.sh || rc=$?
exit $rc
