"""Deterministic cpio "newc" archives, the format the Linux kernel unpacks as an initramfs."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member; ``data`` is the file body or the symlink target."""

    path: str
    mode: int  # full st_mode: type bits | permission bits
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class Archive:
    """Collects members, then writes them sorted with fixed owners and times.

    Sorting by path puts every directory before its contents, which is all the
    kernel's unpacker asks for.  Parent directories are created as needed.
    """

    def __init__(self, mtime: int = 0) -> None:
        self.mtime = mtime
        self._entries: dict[str, Entry] = {}

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._add(Entry(_norm(path), stat.S_IFDIR | mode))

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(Entry(_norm(path), stat.S_IFREG | mode, bytes(data)))

    def add_symlink(self, path: str, target: str) -> None:
        self._add(Entry(_norm(path), stat.S_IFLNK | 0o777, target.encode()))

    def add_chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(Entry(_norm(path), stat.S_IFCHR | mode, rdev=(major, minor)))

    def _add(self, entry: Entry) -> None:
        parent = PurePosixPath(entry.path).parent
        if str(parent) != "." and str(parent) not in self._entries:
            self.add_dir(str(parent))
        old = self._entries.get(entry.path)
        if old is not None and not (stat.S_ISDIR(old.mode) and stat.S_ISDIR(entry.mode)):
            raise ValueError(f"duplicate archive member: {entry.path}")
        self._entries[entry.path] = entry

    def entries(self) -> list[Entry]:
        return [self._entries[p] for p in sorted(self._entries)]

    def write(self, out: BinaryIO) -> int:
        """Write the archive with its trailer; returns the number of bytes written."""
        size = 0
        for ino, entry in enumerate(self.entries(), start=1):
            size += _write_member(out, entry, ino, self.mtime)
        size += _write_member(out, Entry(TRAILER, 0), 0, 0)
        return size

    def to_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()


def _norm(path: str) -> str:
    norm = str(PurePosixPath("/", path)).lstrip("/")
    if not norm or ".." in PurePosixPath(norm).parts:
        raise ValueError(f"bad archive path: {path!r}")
    return norm


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _write_member(out: BinaryIO, entry: Entry, ino: int, mtime: int) -> int:
    name = entry.path.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, mtime, len(entry.data),
              0, 0, entry.rdev[0], entry.rdev[1], len(name), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    chunks = (header, name, _pad(len(header) + len(name)), entry.data, _pad(len(entry.data)))
    out.writelines(chunks)
    return sum(map(len, chunks))


def read_newc(data: bytes) -> list[Entry]:
    """Parse a newc archive (used by tests and for inspecting built images)."""
    entries, pos = [], 0
    while True:
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"bad cpio magic at offset {pos}")
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rdev, namesize = f[1], f[6], (f[9], f[10]), f[11]
        pos += 110
        name = data[pos:pos + namesize - 1].decode()
        pos += namesize + (-(110 + namesize) % 4)
        body = data[pos:pos + filesize]
        pos += filesize + (-filesize % 4)
        if name == TRAILER:
            return entries
        entries.append(Entry(name, mode, body, rdev))
