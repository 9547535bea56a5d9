#!/usr/bin/env bash
# Install what nbcloud needs on a Debian machine: Debian packages (as root), then a
# virtualenv in .venv with nbcloud and its test extras. Safe to run again: it only
# installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
          qemu-system-x86 qemu-utils dnsmasq-base iptables nftables iproute2
          busybox-static dropbear-bin socat e2fsprogs mmdebstrap haproxy
          openssh-client   # ssh: Ansible's connection to instances in the export test
          python3-venv python3-dev   # the session tier's unprivileged user gets its own venv
          virtinst    # virt-install: a peer in bench/peers.py
          chromium)   # chromium: the picture test renders exported notebooks headless

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
# Node.js and npm build the JupyterLab extension and the terminal widget; any install of
# them will do (Debian's, or another that brings its own npm)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]}; run this as root" >&2
        exit 1
    fi
    echo "setup: apt-get update"
    apt-get update -q >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# npm packages, exactly as their lock files say: the front ends' build (the wheel's build
# hook runs `npm run build` in extensions/jupyterlab) and tests/browser's playwright-core,
# whose launcher the lab tier's driver imports too; it drives Debian's chromium (`npx
# playwright install`, a browser download, is neither needed nor possible here).
for dir in extensions/jupyterlab tests/browser; do
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
        echo "setup: npm ci in $dir"
        npm ci --prefix "$dir" --no-audit --no-fund --silent
        touch "$dir/node_modules"
    fi
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the project's metadata changed since the last install.
stamp=.venv/.nbcloud-installed
# (the front ends are built into it, so a change to their sources counts too)
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ -n "$(find extensions/jupyterlab \
        -path '*/node_modules' -prune -o -path '*/labextension' -prune -o -newer "$stamp" \
        -type f -print -quit)" ]; then
    echo "setup: installing nbcloud into .venv"
    # (pip's warnings about this machine's unused local index say nothing about us)
    .venv/bin/pip install -q --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; }
    .venv/bin/pip install -q -e '.[test]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
    touch "$stamp"
fi
echo "setup: done"
