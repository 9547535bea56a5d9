#!/usr/bin/env bash
# The hosts tier: three libvirt daemons on this machine as three lab servers of one cloud
# (tests/hosts/fabric.py). It runs in a network namespace of its own, $NETNS, which holds
# the fabric bridge and the first host; ~/.ssh is a scratch folder there (a bind mount in
# the namespace's own mount table), where the tier writes its keys and known_hosts, so
# the user's own are neither read nor changed.
set -euo pipefail
cd "$(dirname "$0")/.."
NETNS=${NETNS:-mh-fabric}
ssh_dir=$(mktemp -d)
cleanup() {
    ip netns delete "$NETNS" 2>/dev/null || true
    rm -rf "$ssh_dir"
}
trap cleanup EXIT
ip netns delete "$NETNS" 2>/dev/null || true
ip netns add "$NETNS"
mkdir -p "$HOME/.ssh"
# `ip netns exec` gives the command a mount namespace of its own: the bind stays in it
ip netns exec "$NETNS" sh -c 'mount --bind "$0" "$HOME/.ssh" && exec "$@"' "$ssh_dir" \
    .venv/bin/python -m pytest -q -p no:cacheprovider --durations=5 tests/hosts "$@"
