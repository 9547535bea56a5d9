"""Importing disk images from a local file or an http(s) URL.

The source is read once, in chunks: the first chunk decides the format (qcow2 by its
magic, else a raw disk by its partition table or filesystem; anything else, such as an
HTML error page or a compressed file, is refused), every chunk feeds the SHA-256 and the
progress, and the chunks go straight into libvirt's upload stream. A source of unknown
length (no Content-Length) is spooled to a temporary file in the cache folder first,
because a libvirt upload needs its length up front.
"""
from __future__ import annotations

import hashlib
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nbcloud.core.errors import CloudError, InvalidSpec
from nbcloud.core.spec import check_path
from nbcloud.images import qcow2

CHUNK = 256 * 1024          # libvirt's stream buffer size
HEAD = 64 * 1024            # enough for an ISO 9660 descriptor at 32 KiB
# The largest image an import accepts: an announced length (Content-Length) or a spooled
# download beyond it is refused before anything is stored. (A source that fits the cap but
# not the disk fails when the disk fills, leaving nothing: tests/reliability/test_faults.)
IMPORT_MAX = 64 << 30
QCOW2_MAGIC = b"QFI\xfb"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Well-known file types that are not disk images, with what to do instead.
_NOT_IMAGES = (
    (b"\x1f\x8b", "gzip-compressed: decompress it first (gunzip)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (unxz)"),
    (b"BZh", "bzip2-compressed: decompress it first (bunzip2)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first (unzstd)"),
    (b"PK\x03\x04", "a zip archive: unpack the image from it first"),
    (b"KDMV", "a VMDK image: convert it with `qemu-img convert -O qcow2`"),
    (b"vhdxfile", "a VHDX image: convert it with `qemu-img convert -O qcow2`"),
    (b"conectix", "a VHD image: convert it with `qemu-img convert -O qcow2`"),
)


class ImageImportError(CloudError):
    """An import that cannot go on (bad source, wrong format, checksum mismatch)."""


@dataclass(frozen=True)
class Probe:
    """What the first bytes say: the format and, for qcow2, the virtual size."""
    format: str
    virtual_size: int | None


def detect_format(head: bytes, *, quote: bool = True) -> Probe:
    """qcow2 or raw from the first bytes of an image; ImageImportError for anything else
    (and for a qcow2 header that could make QEMU open a host file: images/qcow2.py).
    `quote` False: the error never repeats the bytes (a local file may be a secret one)."""
    if head.startswith(QCOW2_MAGIC):
        try:
            return Probe("qcow2", qcow2.virtual_size(head))
        except qcow2.Refused as exc:
            raise ImageImportError(str(exc)) from None
    for magic, what in _NOT_IMAGES:
        if head.startswith(magic):
            raise ImageImportError(f"not a disk image: the source is {what}")
    if _looks_like_raw_disk(head):
        return Probe("raw", None)
    if not quote:
        raise ImageImportError("not a disk image (qcow2 or raw): the file holds "
                               + ("text" if _is_text(head) else "bytes of no known format"))
    raise ImageImportError(f"not a disk image (qcow2 or raw): the source starts with "
                           f"{_preview(head)}")


def _looks_like_raw_disk(head: bytes) -> bool:
    if len(head) < 512 or len(head) % 512:
        return False
    return (head[510:512] == b"\x55\xaa"                       # MBR or GPT protective MBR
            or head[512:520] == b"EFI PART"                    # GPT
            or head[1080:1082] == b"\x53\xef"                  # ext2/3/4 superblock
            or head[32769:32774] == b"CD001"                   # ISO 9660
            or not any(head[:512]))                            # blank or unpartitioned


def _is_text(head: bytes) -> bool:
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head[:24])


def _preview(head: bytes) -> str:
    """The first bytes of a downloaded source (what a server answered, like an HTML
    error page), as a hint."""
    if _is_text(head):
        return repr(head[:24].decode().strip()[:24]) + " (text, like an HTML error page)"
    return head[:8].hex(" ")


def check_sha256(value: str | None) -> str | None:
    """A lower-case 64-digit hex SHA-256, or None; one-line error otherwise."""
    if value is None:
        return None
    v = value.strip().lower()
    v = v.removeprefix("sha256:")
    if not _SHA256.match(v):
        raise ImageImportError(f"--sha256 {value!r} is not a SHA-256 (64 hex digits)")
    return v


class Source:
    """An opened image source: `size` (None when unknown) and `read(n)` of its bytes."""

    def __init__(self, label: str, fh: BinaryIO, size: int | None, remote: bool = False):
        self.label = label
        self.fh = fh
        self.size = size
        self.remote = remote     # a download (its first bytes may be quoted in an error)

    def read(self, n: int) -> bytes:
        try:
            return self.fh.read(n)
        except (OSError, urllib.error.URLError) as exc:
            raise ImageImportError(f"reading {self.label} failed: {exc}") from None

    def close(self) -> None:
        self.fh.close()


def open_source(source: str, timeout: float = 30.0) -> Source:
    """Open a local path or an http(s) URL for streaming."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        if not source.lower().startswith(("http://", "https://")):
            raise ImageImportError(f"cannot import from {source!r}: give a local file or "
                                   "an http(s):// URL")
        try:
            resp = urllib.request.urlopen(source, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise ImageImportError(f"{source}: the server answered {exc.code} "
                                   f"{exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ImageImportError(f"cannot download {source}: {reason}") from None
        length = resp.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        return Source(source, resp, size, remote=True)
    path = Path(source).expanduser()
    try:
        check_path(path, "image source")
    except InvalidSpec as exc:
        raise ImageImportError(str(exc)) from None
    if not path.is_file():
        raise ImageImportError(f"{source!r}: no such file (give a local path or an "
                               "http(s) URL)")
    try:
        return Source(str(path), open(path, "rb"), path.stat().st_size)
    except OSError as exc:
        raise ImageImportError(f"cannot read {source!r}: {exc.strerror}") from None


class Reader:
    """Reads a Source in chunks, first from the already-read head; hashes, counts and
    reports every byte."""

    def __init__(self, src: Source, head: bytes, total: int | None,
                 progress: Callable[[int, int | None], object] | None):
        self.src = src
        self.pending = head
        self.total = total
        self.done = 0
        self.sha = hashlib.sha256()
        self.progress = progress

    def read(self, n: int) -> bytes:
        if self.pending:
            data, self.pending = self.pending[:n], self.pending[n:]
        else:
            data = self.src.read(min(n, CHUNK))
        if self.total is not None and self.done + len(data) > self.total:
            raise ImageImportError(f"{self.src.label} is longer than the "
                                   f"{self.total} bytes announced")
        self.done += len(data)
        self.sha.update(data)
        if self.progress and data:
            self.progress(self.done, self.total)
        return data


@dataclass(frozen=True)
class Imported:
    """What the stored volume is: its format, bytes, digest and (if known) virtual size."""
    format: str
    size: int
    sha256: str
    virtual_size: int | None
    seconds: float


def stream_into(upload, source: str, *, sha256: str | None = None,
                progress: Callable[[int, int | None], object] | None = None,
                spool_dir: Path | None = None, limit: int | None = None) -> Imported:
    """Read `source` once and hand it to `upload(fmt, size, read)`, which must store the
    bytes and return a handle with `.delete()`-on-failure semantics of its own.

    Verification happens as the bytes pass; a mismatch raises after `upload` returned,
    and the caller removes what it stored. `upload` may be called with the format only
    known from the head, before the rest is read. A source longer than `limit` (at most
    IMPORT_MAX) bytes is refused before `upload` is called."""
    want = check_sha256(sha256)
    cap = min(limit, IMPORT_MAX) if limit is not None else IMPORT_MAX
    start = time.monotonic()
    src = open_source(source)
    try:
        head = _read_head(src)
        probe = detect_format(head, quote=src.remote)
        if src.size is None:
            src = _spool(src, head, spool_dir, cap)
            head = src.read(HEAD)
        _check_size(src, cap)
        reader = Reader(src, head, src.size, progress)
        upload(probe.format, src.size, reader.read)
        if reader.done != src.size:
            raise ImageImportError(f"{source} ended after {reader.done} of {src.size} "
                                   "bytes: the download was cut short")
        got = reader.sha.hexdigest()
        if want and got != want:
            raise ImageImportError(f"checksum mismatch for {source}: expected sha256 "
                                   f"{want[:16]}..., got {got[:16]}...; nothing was kept")
        if progress:
            progress(reader.done, reader.done)
        return Imported(probe.format, reader.done, got, probe.virtual_size,
                        time.monotonic() - start)
    finally:
        src.close()


def _check_size(src: Source, cap: int) -> None:
    if src.size is not None and src.size > cap:
        raise ImageImportError(f"{src.label} is {src.size} bytes: an image may be at most "
                               f"{_bytes(cap)} here")


def _bytes(n: int) -> str:
    """'64 GiB (68719476736 bytes)', or '1024 bytes' below a MiB."""
    if n < 1 << 20:
        return f"{n} bytes"
    return f"{n / (1 << 30):.3g} GiB ({n} bytes)"


def _read_head(src: Source) -> bytes:
    head = b""
    while len(head) < HEAD:
        chunk = src.read(HEAD - len(head))
        if not chunk:
            break
        head += chunk
    if not head:
        raise ImageImportError(f"{src.label} is empty")
    return head


def _spool(src: Source, head: bytes, spool_dir: Path | None, cap: int) -> Source:
    """Copy a source of unknown length to a temporary file (deleted when closed); more
    than `cap` bytes are refused as soon as they arrive."""
    tmp = tempfile.TemporaryFile(dir=spool_dir, prefix="nbcloud-import-")
    try:
        tmp.write(head)
        while chunk := src.read(CHUNK):
            tmp.write(chunk)
            if tmp.tell() > cap:
                raise ImageImportError(f"{src.label} sent more than {_bytes(cap)}, "
                                       f"the most an image may be here")
        size = tmp.tell()
        tmp.seek(0)
    except OSError as exc:  # the spool folder is full (ENOSPC) or not writable
        tmp.close()
        where = spool_dir or tempfile.gettempdir()
        raise ImageImportError(f"{src.label} has no announced length, so it is copied to "
                               f"{where} first, which failed: {exc.strerror} (free space "
                               "there, or point NBCLOUD_CACHE at a larger folder)") from None
    except BaseException:
        tmp.close()
        raise
    finally:
        src.close()
    return Source(src.label, tmp, size, src.remote)

