#!/usr/bin/env bash
# The hosts tier: three libvirt daemons on this machine as three lab servers of one cloud
# (tests/hosts/fabric.py). It runs in a network namespace of its own, $NETNS, which holds
# the fabric bridge and the first host; the second and third hosts get $NETNS-2 and
# $NETNS-3. ~/.ssh is a scratch folder there (a bind mount in the namespace's own mount
# table), where the tier writes its keys and known_hosts, so the user's own are neither
# read nor changed. The shared daemon (netns nbcloud-test) is never touched.
# `--bench` runs bench/migration.py there instead of the tests.
#
# Bounded in time: pytest is interrupted (SIGINT: its fixtures tear the hosts down) after
# $HOSTS_TIER_TIMEOUT seconds, killed 30 s later; whatever then still runs in the tier's
# namespaces (QEMU, dnsmasq, libvirtd, dropbear, SSH connection masters) is killed and the
# namespaces deleted, so nothing of the tier outlives it.
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${NETNS:-mh-fabric}
TIMEOUT=${HOSTS_TIER_TIMEOUT:-600}
namespaces=("$NETNS" "$NETNS-2" "$NETNS-3")
scratch=$(mktemp -d)   # ~/.ssh of the tier, and its temporary folder (SSH sockets too)
ssh_dir=$scratch/ssh
cleanup() {
    for ns in "${namespaces[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -9 $pids 2>/dev/null || true
        fi
        ip netns delete "$ns" 2>/dev/null || true
    done
    rm -rf "$scratch"
}
trap cleanup EXIT
cleanup
mkdir -p "$ssh_dir" "$scratch/tmp"
for ns in "${namespaces[@]}"; do
    ip netns add "$ns"
done
mkdir -p "$HOME/.ssh"
# `scripts/hosts-tier.sh --bench [ARGS]` runs bench/migration.py on the same fabric
if [ "${1:-}" = "--bench" ]; then
    shift
    cmd=(.venv/bin/python bench/migration.py "$@")
else
    cmd=(.venv/bin/python -m pytest -q -p no:cacheprovider --durations=5 tests/hosts "$@")
fi
# `ip netns exec` gives the command a mount namespace of its own: the bind stays in it
HOSTS_FABRIC=$NETNS TMPDIR=$scratch/tmp ip netns exec "$NETNS" \
    sh -c 'mount --bind "$0" "$HOME/.ssh" && exec "$@"' "$ssh_dir" \
    timeout -s INT -k 30 "$TIMEOUT" "${cmd[@]}"
