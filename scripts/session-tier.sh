#!/usr/bin/env bash
# The session tier (Binder's situation): an unprivileged user, qemu:///session (libvirt
# starts a per-user daemon), software emulation, user-mode networking with SSH forwarded
# from a loopback port, no network namespace of its own. Run as root by `make test`: it
# makes the user, gives it its own copy of the project and a virtualenv (from this
# machine's pip cache), and runs the session tests and the notebooks as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
USER_NAME=${NBCLOUD_SESSION_USER:-nbcloud-student}

id -u "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
home=$(getent passwd "$USER_NAME" | cut -d: -f6)
# A clean slate each run (it is a test user): its session daemon, guests and libvirt
# definitions, and nbcloud's inventory, keys and pools, left by an earlier run.
pkill -KILL -u "$USER_NAME" 2>/dev/null || true
rm -rf "$home/.config/libvirt" "$home/.cache/libvirt" "$home/.local/share/nbcloud"
src="$home/nbcloud"
run="/tmp/nbcloud-$USER_NAME-xdg"      # the session daemon's socket lives here

# The project's files, as a clone of it would have them (no .venv, no caches; untracked
# files not ignored by git come too, so a change under way is tested before it is committed).
mkdir -p "$src"
{ git ls-files -z; git ls-files -z --others --exclude-standard; } \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$src"
# Debian's own Python: an interpreter under root's home (pyenv, say) is not the user's to run.
if ! runuser -u "$USER_NAME" -- "$src/.venv/bin/python" -c "" 2>/dev/null; then
    rm -rf "$src/.venv"
    /usr/bin/python3 -m venv "$src/.venv"
fi
stamp="$src/.venv/.nbcloud-installed"
if [ ! -f "$stamp" ] || [ "$src/pyproject.toml" -nt "$stamp" ]; then
    echo "session-tier: installing nbcloud into $src/.venv"
    "$src/.venv/bin/pip" install -q -e "$src[test]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
    touch "$stamp"
fi
# The tiny image's inputs (Debian .debs, package indexes and the unpacked kernel) from root's
# cache, so the user's build downloads only the archive's InRelease files; the user still
# builds and stores its own image.
cache="$home/.cache/nbcloud"
mkdir -p "$cache"
for d in "${NBCLOUD_CACHE:-$HOME/.cache/nbcloud}"/{debs,kernels,archive}; do
    [ -d "$d" ] && cp -a "$d" "$cache/"
done
mkdir -p "$run" "$home/.ipython/profile_default/startup"
chmod 700 "$run"
# a UsageError must fail the notebook tier here too (see tests/notebook_startup.py)
cp tests/notebook_startup.py "$home/.ipython/profile_default/startup/00-usage-errors.py"
chown -R "$USER_NAME:" "$src" "$home/.cache" "$home/.ipython" "$run"

as_user() {
    runuser -u "$USER_NAME" -- env -i HOME="$home" USER="$USER_NAME" PATH=/usr/bin:/bin \
        XDG_RUNTIME_DIR="$run" NBCLOUD_URI=qemu:///session LANG=C.UTF-8 \
        NBCLOUD_CI="${NBCLOUD_CI:-}" \
        bash -c "cd '$src' && $1"
}
# Binder's own steps, as Binder runs them (on Debian here, Ubuntu there): postBuild makes the
# tiny image with a user-space Debian apt, start stores it and runs the command.
venv="PATH=$src/.venv/bin:/usr/bin:/bin"
as_user "$venv bash binder/postBuild"
as_user "$venv binder/start nbcloud doctor" || true   # informational
as_user "$venv binder/start python -m pytest -q -p no:cacheprovider -p tests.nbval_outputs \
    tests/session --nbval-lax notebooks"
