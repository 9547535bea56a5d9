"""The initramfs writer: newc archives the kernel (and cpio itself) can read back."""

import shutil
import stat
import subprocess

import pytest

from tests.needs import missing

from nbcloud.images.cpio import Archive, read_newc

pytestmark = pytest.mark.unit


@pytest.fixture
def sample_archive() -> Archive:
    arc = Archive()
    arc.add_file("init", b"#!/bin/sh\necho hi\n", 0o755)
    arc.add_file("etc/shadow", b"root:*:19000::::::\n", 0o600)
    arc.add_file("lib/modules/6.1/empty.ko", b"")
    arc.add_file("lib/modules/6.1/odd-size", b"abcde")
    arc.add_symlink("bin/sh", "/bin/busybox")
    arc.add_dir("tmp", 0o1777)
    return arc


def test_round_trip_names_modes_contents(sample_archive):
    entries = {e.path: e for e in read_newc(sample_archive.to_bytes())}
    assert entries["init"].data == b"#!/bin/sh\necho hi\n"
    assert entries["init"].mode == stat.S_IFREG | 0o755
    assert entries["etc/shadow"].mode == stat.S_IFREG | 0o600
    assert entries["lib/modules/6.1/odd-size"].data == b"abcde"
    assert entries["lib/modules/6.1/empty.ko"].data == b""
    assert entries["bin/sh"].mode == stat.S_IFLNK | 0o777
    assert entries["bin/sh"].data == b"/bin/busybox"
    assert entries["tmp"].mode == stat.S_IFDIR | 0o1777
    # parents are created, as directories
    for d in ("etc", "lib", "lib/modules", "lib/modules/6.1", "bin"):
        assert stat.S_ISDIR(entries[d].mode), d


def test_parents_come_before_children_and_order_is_sorted(sample_archive):
    names = [e.path for e in read_newc(sample_archive.to_bytes())]
    assert names == sorted(names)
    for i, name in enumerate(names):
        if "/" in name:
            assert name.rsplit("/", 1)[0] in names[:i]


def test_deterministic_and_aligned(sample_archive):
    data = sample_archive.to_bytes()
    assert data == sample_archive.to_bytes()
    assert len(data) % 4 == 0
    assert b"TRAILER!!!" in data[-128:]
    # fixed owners and times: uid, gid and mtime are zero in every header
    pos = 0
    for _ in read_newc(data):
        field = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        assert (field[2], field[3], field[5]) == (0, 0, 0)
        filesize, namesize = field[6], field[11]
        pos += 110 + namesize
        pos += -pos % 4
        pos += filesize + (-filesize % 4)


def test_character_device():
    arc = Archive()
    arc.add_chardev("dev/console", 5, 1)
    (dev_dir, console) = read_newc(arc.to_bytes())
    assert dev_dir.path == "dev"
    assert console.mode == stat.S_IFCHR | 0o600 and console.rdev == (5, 1)


@pytest.mark.parametrize("bad", ["", "/", "../etc", "a/../../b"])
def test_rejects_bad_paths(bad):
    with pytest.raises(ValueError):
        Archive().add_file(bad, b"x")


def test_rejects_duplicates_but_allows_repeated_dirs():
    arc = Archive()
    arc.add_file("a/b", b"1")
    arc.add_dir("a")
    with pytest.raises(ValueError):
        arc.add_file("a/b", b"2")


def _cpio_tool() -> list[str] | None:
    if shutil.which("cpio"):
        return ["cpio"]
    if shutil.which("busybox"):
        return ["busybox", "cpio"]
    return None


def test_host_cpio_extracts_it(sample_archive, tmp_path):
    """An independent reader agrees with ours."""
    tool = _cpio_tool()
    if tool is None:
        missing("neither cpio nor busybox is installed (scripts/setup.sh installs busybox)")
    data = sample_archive.to_bytes()
    listing = subprocess.run([*tool, "-t"], input=data, capture_output=True, check=True)
    assert sorted(listing.stdout.decode().split()) == sorted(e.path for e in sample_archive.entries())
    subprocess.run([*tool, "-i", "-d"], input=data, cwd=tmp_path, capture_output=True, check=True)
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((tmp_path / "init").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "etc/shadow").stat().st_mode) == 0o600
    assert (tmp_path / "bin/sh").is_symlink()
    assert str((tmp_path / "bin/sh").readlink()) == "/bin/busybox"
    assert (tmp_path / "lib/modules/6.1/odd-size").read_bytes() == b"abcde"
