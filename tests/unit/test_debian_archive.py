"""The tiny image's packages without apt or dpkg (nbcloud/images/debian_archive.py), on a
Debian archive laid out in a folder (file:// URLs): versions chosen as apt would, every link
of the checksum chain checked, .debs unpacked in Python, hostile members refused."""
from __future__ import annotations

import hashlib
import io
import lzma
import tarfile

import pytest

from nbcloud.images.debian_archive import (
    ArchiveError,
    DebianArchive,
    release_text,
    unpack,
)


def ar(members: list[tuple[str, bytes]]) -> bytes:
    """A System V `ar` archive, as dpkg-deb writes a .deb."""
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def tar(entries, compress=lzma.compress) -> bytes:
    """entries: (name, kind, payload): kind file/exe/dir/sym/link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind in ("file", "exe"):
                info.size, info.mode = len(payload), 0o4755 if kind == "exe" else 0o644
                t.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                         "link": tarfile.LNKTYPE}[kind]
            info.linkname = payload or ""
            t.addfile(info)
    return compress(buf.getvalue())


def deb(entries, member="data.tar.xz", compress=lzma.compress) -> bytes:
    return ar([("debian-binary", b"2.0\n"), ("control.tar.xz", tar([])),
               (member, tar(entries, compress))])


HELLO = [("./", "dir", None), ("./usr/bin/", "dir", None),
         ("./usr/bin/hello", "exe", b"#!/bin/sh\necho hi\n"),
         ("./usr/bin/hi", "sym", "hello"), ("./usr/bin/hello2", "link", "./usr/bin/hello")]


@pytest.fixture
def mirror(tmp_path):
    """Two suites: `main` has hello 1.0 and tool 2.0, `updates` has hello 1:0.9 (an epoch
    wins over a higher upstream version, as in dpkg)."""
    root = tmp_path / "mirror"
    files = {}

    def publish(archive, suite, packages):
        text = ""
        for name, version, data in packages:
            # pool names carry no epoch, as Debian's
            fname = f"pool/main/{name[0]}/{name}/{name}_{version.split(':')[-1]}_amd64.deb"
            path = root / archive / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files[name, version] = path
            text += (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
                     f"Description: a test\n that spans lines\nFilename: {fname}\n"
                     f"Size: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n\n")
        packed = lzma.compress(text.encode())
        digest = hashlib.sha256(packed).hexdigest()
        dists = root / archive / "dists" / suite
        (dists / "main/binary-amd64/by-hash/SHA256").mkdir(parents=True)
        (dists / f"main/binary-amd64/by-hash/SHA256/{digest}").write_bytes(packed)
        release = (f"Origin: Test\nSuite: {suite}\nSHA256:\n"
                   f" {'0' * 64} 1 main/binary-amd64/Packages\n"
                   f" {digest} {len(packed)} main/binary-amd64/Packages.xz\n")
        (dists / "InRelease").write_text(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + release
            + "-----BEGIN PGP SIGNATURE-----\n\nxx\n-----END PGP SIGNATURE-----\n")

    hello = deb(HELLO)
    publish("debian", "main", [("hello", "1.0", hello), ("tool", "2.0", deb([]))])
    publish("debian", "updates", [("hello", "1:0.9", hello)])
    archive = DebianArchive(tmp_path / "cache", mirror=f"file://{root}",
                            suites=(("debian", "main"), ("debian", "updates")), keyring="")
    return archive, files


def test_versions_are_chosen_as_apt_would_and_debs_unpack(mirror, tmp_path):
    archive, _files = mirror
    found = archive.candidates(["hello", "tool", "absent"])
    assert {n: c.version for n, c in found.items()} == {"hello": "1:0.9", "tool": "2.0"}
    path = archive.deb(found["hello"], tmp_path / "debs")
    assert path.name == "hello_1%3a0.9_amd64.deb"
    unpack(path, tmp_path / "root")
    exe = tmp_path / "root/usr/bin/hello"
    assert exe.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert exe.stat().st_mode & 0o7777 == 0o755          # set-uid dropped, exec kept
    assert (tmp_path / "root/usr/bin/hi").readlink().as_posix() == "hello"
    assert (tmp_path / "root/usr/bin/hello2").read_bytes() == exe.read_bytes()


def test_the_resolution_is_cached_by_the_indexes_it_came_from(mirror):
    archive, _ = mirror
    first = archive.candidates(["hello"])
    memo = list((archive.cache / "indexes").glob("resolved-*.json"))
    assert len(memo) == 1
    assert archive.candidates(["hello"]) == first
    assert len(list((archive.cache / "indexes").glob("resolved-*.json"))) == 1


def test_a_deb_that_does_not_match_its_index_is_refused(mirror, tmp_path):
    archive, files = mirror
    found = archive.candidates(["hello"])
    data = bytearray(files["hello", "1:0.9"].read_bytes())
    data[-3] ^= 1
    files["hello", "1:0.9"].write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="checksum mismatch"):
        archive.deb(found["hello"], tmp_path / "debs")
    assert not list((tmp_path / "debs").glob("*.deb"))    # nothing half-trusted is kept


def test_an_index_that_does_not_match_its_release_is_refused(mirror, tmp_path):
    archive, _ = mirror
    index = next((archive.cache.parent / "mirror/debian/dists/updates").rglob("by-hash/*/*"))
    index.write_bytes(lzma.compress(b"Package: hello\nVersion: 9\n"))
    with pytest.raises(ArchiveError, match="checksum mismatch"):
        archive.candidates(["hello"])


def test_release_text_drops_the_armour_and_unescapes_dashes():
    signed = (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n- --dash\n"
              b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n")
    assert release_text(signed, keyring="") == "Suite: x\n--dash\n"


@pytest.mark.parametrize("entries,words", [
    ([("../evil", "file", b"x")], "leaves the tree"),
    ([("/etc/evil", "file", b"x")], "leaves the tree"),
    ([("./out", "sym", "/etc"), ("./out/passwd", "file", b"x")], "through a link"),
    ([("./x", "link", "../../etc/passwd")], "leaves the tree"),
])
def test_hostile_members_are_refused(tmp_path, entries, words):
    path = tmp_path / "evil.deb"
    path.write_bytes(deb(entries))
    with pytest.raises(ArchiveError, match=words):
        unpack(path, tmp_path / "root")
    assert not (tmp_path / "evil").exists()


def test_zstd_and_gzip_members_unpack(tmp_path):
    import gzip

    import zstandard
    for member, compress in (("data.tar.zst", zstandard.ZstdCompressor().compress),
                             ("data.tar.gz", gzip.compress)):
        path = tmp_path / f"{member}.deb"
        path.write_bytes(deb(HELLO, member, compress))
        unpack(path, tmp_path / member)
        assert (tmp_path / member / "usr/bin/hello").read_bytes() == b"#!/bin/sh\necho hi\n"
