"""The tiny image built from the real Debian archive with apt and dpkg out of reach, as on a
distribution without them: only Python and `gpgv` on PATH. Run outside the test network
namespace (the mirror is not reachable inside it), by scripts/test.sh.

The build is deterministic: a second build from the same packages in another cache makes
the same kernel and initramfs, byte for byte; a third call in the first cache is a cache hit.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbcloud.images.debian_archive import KEYRING, MIRROR, ArchiveError, _get, release_text
from tests.needs import missing, program

BUILD = """
import json, shutil, sys
assert not [t for t in ("apt-get", "apt-cache", "dpkg", "dpkg-deb") if shutil.which(t)]
from nbcloud.images.tiny import build_tiny
said = []
img = build_tiny(sys.argv[1], progress=said.append)
print(json.dumps({"kernel": str(img.kernel), "initrd": str(img.initrd),
                  "digest": img.digest, "said": said}))
"""


def build(cache: Path, path_dir: Path) -> dict:
    env = {"PATH": str(path_dir), "HOME": str(cache.parent), "LANG": "C.UTF-8"}
    if os.environ.get("NBCLOUD_DEBIAN_MIRROR"):
        env["NBCLOUD_DEBIAN_MIRROR"] = os.environ["NBCLOUD_DEBIAN_MIRROR"]
    done = subprocess.run([sys.executable, "-c", BUILD, str(cache)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_tiny_image_builds_without_apt_or_dpkg_and_deterministically(tmp_path):
    gpgv = program("gpgv", "the archive's signature is checked with it (Debian gnupg)")
    path_dir = tmp_path / "bin"          # PATH: gpgv alone
    path_dir.mkdir()
    (path_dir / "gpgv").symlink_to(gpgv)
    first = build(tmp_path / "a", path_dir)
    assert any(s.startswith("building the tiny image") for s in first["said"]), first
    manifest = json.loads((Path(first["initrd"]).parent / "manifest.json").read_text())
    assert any(p.startswith("linux-image-") for p in manifest["packages"])
    assert set(manifest["packages"]) >= {"busybox-static", "dropbear-bin", "libc6"}

    # the same packages in a fresh cache (debs and indexes copied, no image): the same bytes
    (tmp_path / "b").mkdir()
    for part in ("debs", "archive"):
        shutil.copytree(tmp_path / "a" / part, tmp_path / "b" / part)
    second = build(tmp_path / "b", path_dir)
    assert second["digest"] == first["digest"]
    assert Path(second["initrd"]).read_bytes() == Path(first["initrd"]).read_bytes()
    assert Path(second["kernel"]).read_bytes() == Path(first["kernel"]).read_bytes()

    # built already: found, nothing built or downloaded again
    third = build(tmp_path / "a", path_dir)
    assert third["digest"] == first["digest"] and third["said"] == [], third["said"]


def test_a_tampered_release_file_is_refused():
    """The real InRelease verifies against Debian's keyring; one changed byte does not."""
    program("gpgv", "the archive's signature is checked with it (Debian gnupg)")
    if not os.path.exists(KEYRING):
        missing(f"Debian's archive keyring {KEYRING} is not installed")
    signed = _get(f"{MIRROR}/debian/dists/bookworm/InRelease", 1 << 20)
    assert "SHA256:" in release_text(signed)
    tampered = signed.replace(b"Codename: bookworm", b"Codename: bookwarm")
    with pytest.raises(ArchiveError, match="signature does not verify"):
        release_text(tampered)
