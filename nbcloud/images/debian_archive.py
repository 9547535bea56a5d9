"""Debian packages without apt or dpkg: the archive's index and the .debs fetched in Python,
every link checked, and .debs unpacked in Python.

The chain of trust is apt's: the suite's `InRelease` (its OpenPGP signature checked with
`gpgv` against Debian's archive keyring where both are installed; over HTTPS either way)
lists the SHA256 of each `Packages` index; each index lists the SHA256 of each `.deb`.
A `.deb` is an `ar` archive whose `data.tar.{xz,gz,zst}` member holds the files.

So `%cloud image build tiny` works on any Linux with libvirt (Fedora, Arch), not only where
apt is. Downloads are cached: a `Packages` index by its SHA256, a `.deb` under apt's own
file name, the resolved versions by the indexes they came from.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from debian.arfile import ArFile
from debian.debian_support import Version

MIRROR = "https://deb.debian.org"
#: (archive, suite) pairs, as a bookworm system's sources list them
SUITES = (("debian", "bookworm"), ("debian", "bookworm-updates"),
          ("debian-security", "bookworm-security"))
COMPONENT, ARCH = "main", "amd64"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MAX_INDEX = 64 << 20          # bytes: a Packages.xz is ~9 MB, its text ~45 MB
MAX_DEB = 256 << 20
TIMEOUT = 60.0

Progress = Callable[[str], None]


class ArchiveError(RuntimeError):
    """A package could not be had: unreachable mirror, bad signature or checksum, ..."""


@dataclass(frozen=True)
class Candidate:
    """The version of one package that apt would install, and where its .deb is."""
    name: str
    version: str
    url: str
    sha256: str
    size: int
    depends: str = ""

    @property
    def filename(self) -> str:
        """The .deb's file name as apt downloads it (`:` of an epoch as `%3a`)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{ARCH}.deb"


def _get(url: str, limit: int) -> bytes:
    if not url.startswith(("https://", "http://", "file://")):
        raise ArchiveError(f"not a URL nbcloud fetches packages from: {url!r}")
    req = urllib.request.Request(url, headers={"User-Agent": "nbcloud"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            data = r.read(limit + 1)
    except OSError as exc:
        raise ArchiveError(f"cannot fetch {url}: {exc}") from None
    if len(data) > limit:
        raise ArchiveError(f"{url} is larger than {limit >> 20} MiB: refused")
    return data


def release_text(signed: bytes, keyring: str | None = None) -> str:
    """The Release fields of an `InRelease` file: the text `gpgv` verified when it and the
    keyring are there (a bad signature raises), else the clear text between the armour."""
    keyring = keyring if keyring is not None else os.environ.get("NBCLOUD_DEBIAN_KEYRING",
                                                                  KEYRING)
    gpgv = shutil.which("gpgv")
    if gpgv and keyring and os.path.exists(keyring):
        done = subprocess.run([gpgv, "--keyring", keyring, "--output", "-", "-"],
                              input=signed, capture_output=True, check=False)
        if done.returncode != 0:
            raise ArchiveError("the archive's InRelease signature does not verify against "
                               f"{keyring}: {done.stderr.decode(errors='replace')[-300:]}")
        return done.stdout.decode()
    text = signed.decode()
    m = re.search(r"-----BEGIN PGP SIGNED MESSAGE-----\n(?:Hash: .*\n)*\n(.*?)\n"
                  r"-----BEGIN PGP SIGNATURE-----", text, re.DOTALL)
    body = m.group(1) if m else text
    return "\n".join(line[2:] if line.startswith("- ") else line
                     for line in body.split("\n")) + "\n"


def release_sha256(text: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) from a Release file's SHA256 field."""
    section = re.search(r"^SHA256:\n((?: .*\n?)*)", text, re.MULTILINE)
    out = {}
    for line in (section.group(1) if section else "").splitlines():
        digest, size, path = line.split()
        out[path] = (digest, int(size))
    return out


def stanzas(text: str, wanted: Callable[[str], bool]) -> Iterable[dict[str, str]]:
    """The stanzas of a Packages index whose package name `wanted` accepts (the others
    are skipped before they are parsed: the index holds some 60,000)."""
    for block in text.split("\n\n"):
        if not block.startswith("Package: ") or not wanted(block[9:block.find("\n")]):
            continue
        fields = {}
        for line in block.split("\n"):
            key, sep, value = line.partition(": ")
            if sep and not line.startswith(" "):
                fields[key] = value.strip()
        yield fields


def _check(data: bytes, sha256: str, size: int, what: str) -> None:
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise ArchiveError(f"{what}: checksum mismatch (expected {size} bytes with SHA256 "
                           f"{sha256[:16]}..., got {len(data)} bytes): refused")


class DebianArchive:
    """Candidates and .debs from a Debian mirror, cached under `cache`."""

    def __init__(self, cache: Path, mirror: str | None = None,
                 suites: tuple[tuple[str, str], ...] = SUITES, keyring: str | None = None,
                 say: Progress | None = None):
        self.cache = Path(cache)
        self.mirror = (mirror or os.environ.get("NBCLOUD_DEBIAN_MIRROR") or MIRROR).rstrip("/")
        self.suites, self.keyring = suites, keyring
        self.say = say or (lambda msg: None)

    def _index(self, archive: str, suite: str) -> tuple[str, Path]:
        """(SHA256, cached file) of the suite's Packages.xz for main/amd64, checked
        against the InRelease fetched now."""
        base = f"{self.mirror}/{archive}/dists/{suite}"
        text = release_text(_get(f"{base}/InRelease", MAX_INDEX), self.keyring)
        rel = f"{COMPONENT}/binary-{ARCH}/Packages.xz"
        try:
            digest, size = release_sha256(text)[rel]
        except KeyError:
            raise ArchiveError(f"{suite}'s Release lists no {rel}") from None
        cached = self.cache / "indexes" / f"{digest}.xz"
        if not cached.exists():
            self.say(f"fetching the package index of {suite} ({size >> 10} KiB)")
            # by hash: a mirror half-way through an update still serves this very file
            data = _get(f"{base}/{COMPONENT}/binary-{ARCH}/by-hash/SHA256/{digest}", MAX_INDEX)
            _check(data, digest, size, f"{suite} {rel}")
            _write(cached, data)
        return digest, cached

    def candidates(self, names: Iterable[str], pattern: str = "") -> dict[str, Candidate]:
        """The newest version of each package named, or whose name matches the regular
        expression `pattern`, across the suites, as apt would pick it."""
        names = set(names)
        match = re.compile(pattern).fullmatch if pattern else (lambda n: None)
        indexes = [(archive, suite, *self._index(archive, suite))
                   for archive, suite in self.suites]
        key = json.dumps([sorted(names), pattern, [i[2] for i in indexes], self.mirror])
        digest = hashlib.sha256(key.encode()).hexdigest()
        memo = self.cache / "indexes" / f"resolved-{digest[:24]}.json"
        found = _read_json(memo)
        if found is None:
            found = []
            for archive, _suite, _digest, path in indexes:
                text = lzma.decompress(path.read_bytes()).decode()
                for f in stanzas(text, lambda n: n in names or match(n) is not None):
                    if f.get("Architecture") in (ARCH, "all"):
                        found.append([f["Package"], f["Version"],
                                      f"{self.mirror}/{archive}/{f['Filename']}",
                                      f["SHA256"], int(f["Size"]), f.get("Depends", "")])
            _write(memo, json.dumps(found).encode())
        best: dict[str, Candidate] = {}
        for row in found:
            c = Candidate(*row)
            if c.name not in best or Version(c.version) > Version(best[c.name].version):
                best[c.name] = c
        return best

    def deb(self, c: Candidate, debs_dir: Path) -> Path:
        """The checked .deb of candidate `c` in `debs_dir` (downloaded if missing)."""
        path = debs_dir / c.filename
        if path.exists():
            try:
                _check(path.read_bytes(), c.sha256, c.size, c.filename)
                return path
            except ArchiveError:  # a download cut short: fetch it again
                path.unlink()
        data = _get(c.url, MAX_DEB)
        _check(data, c.sha256, c.size, c.filename)
        _write(path, data)
        return path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, data: bytes) -> None:
    """Write atomically (a reader never sees half a file; two writers race harmlessly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


# --- .deb = ar(debian-binary, control.tar.*, data.tar.*) ---------------------------------

def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zst"):
        import zstandard  # Ubuntu's and newer Debian's packages use zstd
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if name.endswith(".tar"):
        return data
    raise ArchiveError(f"cannot unpack {name}: not xz, gz or zst")


def unpack(deb: Path, dest: Path) -> None:
    """Extract a .deb's files into `dest`, as `dpkg-deb -x` would, refusing any member that
    would land outside `dest` (absolute, `..`, or through a symlink it made)."""
    ar = ArFile(fileobj=io.BytesIO(deb.read_bytes()))
    members = [m for m in ar.getnames() if m.startswith("data.tar")]
    if len(members) != 1:
        raise ArchiveError(f"{deb.name} is not a .deb: no single data.tar member")
    data = _decompress(members[0], ar.getmember(members[0]).read())
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            rel = PurePosixPath(m.name)
            if rel.is_absolute() or ".." in rel.parts:
                raise ArchiveError(f"{deb.name}: member {m.name!r} leaves the tree: refused")
            if not rel.parts:  # the tree's own top, "./"
                continue
            target = dest.joinpath(*rel.parts)
            if not target.parent.resolve().is_relative_to(root):
                raise ArchiveError(f"{deb.name}: member {m.name!r} goes through a link out "
                                   "of the tree: refused")
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif m.issym():
                if os.path.lexists(target):
                    target.unlink()
                os.symlink(m.linkname, target)
            elif m.islnk():
                source = dest.joinpath(*PurePosixPath(m.linkname).parts)
                if not source.resolve().is_relative_to(root):
                    raise ArchiveError(f"{deb.name}: hard link {m.name!r} leaves the tree")
                shutil.copyfile(source, target)
            elif m.isfile():
                body = tar.extractfile(m).read()
                if os.path.lexists(target):
                    target.unlink()
                target.write_bytes(body)
                target.chmod(0o755 if m.mode & 0o111 else 0o644)
            # devices and fifos: none in the packages the tiny image takes
