#!/usr/bin/env bash
# A newcomer's install: a fresh clone of this repository (its committed HEAD) pip-installed
# into a fresh virtualenv at DEST/venv, nothing else (the wheel's build hook builds the
# JupyterLab extension and the terminal widget from npm). The lab tier (tests/lab) runs that
# install's JupyterLab; `make test` calls this outside the test namespace, where the
# package registries are reachable, and passes DEST on as NBCLOUD_FRESH_INSTALL.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: scripts/fresh-install.sh DEST}
rm -rf "$dest"
mkdir -p "$dest"
start=$(date +%s)
git clone -q --no-hardlinks . "$dest/src"
"${PYTHON:-python3}" -m venv "$dest/venv"
"$dest/venv/bin/pip" install -q "$dest/src" 2>&1 | { grep -v "is ignored: it is neither" || true; }
echo "fresh-install: $(git -C "$dest/src" rev-parse --short HEAD) installed in" \
     "$(( $(date +%s) - start )) s at $dest/venv"
