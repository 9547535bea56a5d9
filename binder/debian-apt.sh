#!/usr/bin/env bash
# A user-space apt for Debian bookworm: no root, nothing of the system's apt touched.
# The tiny image is made of Debian packages (the cloud kernel, busybox, dropbear) whatever
# the machine's own distribution is (Binder's images are Ubuntu): `apt-get download` and
# `apt-cache show` read this configuration through APT_CONFIG.
# Usage: source binder/debian-apt.sh   (sets APT_CONFIG and refreshes the package lists)
set -euo pipefail
APT_DIR=${NBCLOUD_APT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nbcloud/apt}
KEYRING=${NBCLOUD_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
mkdir -p "$APT_DIR"/lists/partial "$APT_DIR"/archives/partial "$APT_DIR"/state "$APT_DIR"/none
: > "$APT_DIR"/state/status
cat > "$APT_DIR"/sources.list <<SOURCES
deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
SOURCES
cat > "$APT_DIR"/apt.conf <<CONF
Dir::State "$APT_DIR/state";
Dir::State::Lists "$APT_DIR/lists";
Dir::State::status "$APT_DIR/state/status";
Dir::Cache "$APT_DIR";
Dir::Cache::archives "$APT_DIR/archives";
Dir::Etc::SourceList "$APT_DIR/sources.list";
Dir::Etc::SourceParts "$APT_DIR/none";
Dir::Etc::Preferences "$APT_DIR/none";
Dir::Etc::PreferencesParts "$APT_DIR/none";
APT::Architecture "amd64";
APT::Sandbox::User "$(id -un)";
Debug::NoLocking "true";
CONF
export APT_CONFIG="$APT_DIR/apt.conf"
apt-get -q update >/dev/null
