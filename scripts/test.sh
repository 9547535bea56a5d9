#!/usr/bin/env bash
# Every test tier, inside the test network namespace (guest addresses are reachable only
# there). `make test` (the README's test command) first sets the machine up and brings the
# host up in that namespace with the tiny image (Makefile target `host`).
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${1:-nbcloud-test}

# The slow tier boots it; built here because the mirror is not reachable in the namespace.
.venv/bin/nbcloud image build debian
# Notebook kernels get an IPython dir whose startup file turns a UsageError into an error
# nbval sees (tests/notebook_startup.py).
ipython_dir=$(mktemp -d)
mkdir -p "$ipython_dir/profile_default/startup"
cp tests/notebook_startup.py "$ipython_dir/profile_default/startup/00-usage-errors.py"
rc=0
# The layer rules of DESIGN.md, as import-linter contracts (.importlinter).
.venv/bin/lint-imports || rc=$?
# The lab tier (tests/lab) runs JupyterLab from a newcomer's install: a fresh clone
# pip-installed into a fresh virtualenv, made here, where the package registries are
# reachable (the namespace has no route to them).
fresh=$(mktemp -d)
bash scripts/fresh-install.sh "$fresh" || rc=$?
export NBCLOUD_FRESH_INSTALL=$fresh
# What reaches the package registries (the tiny image from the Debian archive without apt),
# outside the namespace, where the mirror is reachable.
.venv/bin/python -m pytest -q -p no:cacheprovider tests/registries || rc=$?
# tests/nbval_outputs.py: a notebook cell whose output shows a failure (stderr, a traceback,
# a non-zero `[exit status N]`) fails, unless it is tagged as meant to. The first and the
# course notebooks run here in real JupyterLab instead (tests/browser, the same checks and
# more: figures drawn, the monitor's time axis); nbval runs them on the session tier.
IPYTHONDIR="$ipython_dir" ip netns exec "$NETNS" .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 \
    -p tests.nbval_outputs tests --ignore=tests/openstack --ignore=tests/registries --ignore=tests/hosts --nbval-lax notebooks/runbooks || rc=$?
# The hosts tier: three libvirt daemons as the hosts of one cloud, in namespaces of their
# own (not the shared daemon's), reached over SSH.
bash scripts/hosts-tier.sh || rc=$?
# The openstack tier: a real all-in-one OpenStack (Debian 12's own Zed packages) in network
# namespace nbcloud-os, installed the first time and started by its own script; the tier
# runs inside that namespace, where the cloud's APIs and floating IPs are.
if bash scripts/openstack/aio.sh up; then
    bash scripts/openstack/aio.sh exec .venv/bin/python -m pytest -q -p no:cacheprovider \
        --durations=5 tests/openstack || rc=$?
    # The course notebooks again, on the cloud: only the connection differs (NBCLOUD_URI),
    # with an nbcloud home of their own (inventory, keys) and this checkout's tiny image in
    # Glance; bounded, so that a stuck cloud cannot hold the test command.
    os_home=$(mktemp -d)
    export NBCLOUD_URI=openstack://nbcloud-aio NBCLOUD_HOME=$os_home
    bash scripts/openstack/aio.sh exec .venv/bin/nbcloud image build tiny || rc=$?
    IPYTHONDIR="$ipython_dir" bash scripts/openstack/aio.sh exec timeout -k 30 1200 \
        .venv/bin/python -m pytest -q -p no:cacheprovider -p tests.nbval_outputs --durations=5 --nbval-lax \
        notebooks/01-first-instance.ipynb notebooks/course/0[1235]-*.ipynb \
        notebooks/course/0[68]-*.ipynb || rc=$?
    unset NBCLOUD_URI NBCLOUD_HOME
    rm -rf "$os_home"
else
    rc=1
fi
# The same notebooks again on the session tier: an unprivileged user, qemu:///session,
# user-mode networking, no namespace of its own (loopback only).
bash scripts/session-tier.sh || rc=$?
rm -rf "$ipython_dir" "$fresh"
exit $rc
