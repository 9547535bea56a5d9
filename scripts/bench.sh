#!/usr/bin/env bash
# The benchmarks (never part of the tests), each inside the namespace where the guests are
# reachable. `make bench` first sets the machine and the host up (Makefile target `host`).
# Each writes bench/results/NAME.json; bench/report.py folds them into bench.json,
# bench.md (the tables of docs/benchmarks.md) and bench.html (a Plotly chart).
#   BENCH_QUICK=1  fewer rounds (a check that everything runs, not figures to publish)
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${1:-nbcloud-test}
IN_NS=(ip netns exec "$NETNS")
PY=.venv/bin/python
start=$SECONDS

# kcli (PyPI) is a peer, not a dependency: it lives in its own virtualenv.
if [ ! -x .venv-bench/bin/kcli ]; then
    echo "bench: installing kcli into .venv-bench"
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -q kcli libvirt-python 2>&1 \
        | { grep -v "is ignored: it is neither" || true; } \
        || echo "bench: kcli did not install; its column will say so"
fi

if [ -n "${BENCH_QUICK:-}" ]; then
    TINY=2 DEBIAN=1 COUNTS="1 2" MEM=1 CLONES="1 2"
else
    TINY=5 DEBIAN=2 COUNTS="1 2 4 8" MEM=2 CLONES="1 10 30"
fi

run() {   # run NAME CMD...: one benchmark; a failure is reported, the others still run
    local name=$1; shift
    echo "== bench: $name ($((SECONDS - start)) s in)"
    "$@" || echo "bench: $name FAILED (exit $?)"
}

run peers-tiny   "${IN_NS[@]}" $PY bench/peers.py tiny --rounds "$TINY"
run peers-debian "${IN_NS[@]}" $PY bench/peers.py debian --rounds "$DEBIAN"
# shellcheck disable=SC2086
run clones       "${IN_NS[@]}" $PY bench/clones.py --rounds "$TINY" --counts $CLONES
# shellcheck disable=SC2086
run count        "${IN_NS[@]}" $PY bench/count.py --counts $COUNTS
run memory       "${IN_NS[@]}" $PY bench/memory.py --rounds "$MEM"
run plan         $PY bench/plan.py
run magic        $PY bench/magic.py
# several hosts: two daemons of this machine, in the hosts tier's own namespaces
run migration    bash scripts/hosts-tier.sh --bench --rounds "$TINY"
# the other engineers' benchmarks, when they are there
for extra in monitor agent topology; do
    if [ -f "bench/$extra.py" ]; then
        run "$extra" "${IN_NS[@]}" $PY "bench/$extra.py"
    fi
done
# nbcloud's OpenStack provider against the OpenStack CLI, when the all-in-one cloud is up
# (inside its namespace: its APIs and floating IPs are reachable only there)
if bash scripts/openstack/aio.sh exec true 2>/dev/null; then
    run openstack bash scripts/openstack/aio.sh exec $PY bench/openstack_boot.py \
        --rounds "$TINY"
else
    echo "bench: openstack not run: the all-in-one cloud is not up (scripts/openstack/aio.sh up)"
fi
$PY bench/report.py
echo "bench: done in $((SECONDS - start)) s"
