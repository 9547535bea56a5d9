"""Offline, the tiny image falls back only to a build of this very source: a build made by
another checkout or version of nbcloud (another init) is never booted in its place."""
from __future__ import annotations

import json
import os

import pytest

from nbcloud.images import tiny
from nbcloud.images.debian_archive import ArchiveError

pytestmark = pytest.mark.unit
VERSIONS = {"linux-image-6.1.0-1-cloud-amd64": "6.1.1-1", "busybox-static": "1:1.35.0-4"}


def _built(cache, name, digest, age):
    out = cache / f"tiny-{name}"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(
        {"digest": digest, "cmdline": "console=ttyS0", "packages": VERSIONS,
         "kernel": "vmlinuz", "builder": tiny.BUILDER_VERSION}))
    os.utime(out / "manifest.json", (age, age))
    return out


@pytest.fixture
def offline(monkeypatch):
    def unreachable(_archive):
        raise ArchiveError("cannot fetch InRelease: no route")
    monkeypatch.setattr(tiny, "resolve", unreachable)


def test_a_newer_build_of_other_source_is_passed_over(tmp_path, offline):
    ours = _built(tmp_path, "ours", tiny._digest(VERSIONS), 1000)
    _built(tmp_path, "other", "0" * 64, 2000)         # newer, from another init
    said = []
    got = tiny.build_tiny(tmp_path, progress=said.append)
    assert got.digest == tiny._digest(VERSIONS) and got.initrd.parent == ours
    assert "using the image built before" in said[-1]


def test_no_build_of_this_source_is_an_error_that_says_so(tmp_path, offline):
    _built(tmp_path, "other", "0" * 64, 2000)
    with pytest.raises(tiny.TinyImageError, match="no tiny image built from this nbcloud"):
        tiny.build_tiny(tmp_path)
