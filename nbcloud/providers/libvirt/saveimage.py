"""libvirt's QEMU save image, read: a 92-byte header, then `data_len` bytes holding the
domain XML (NUL-terminated, zero-padded) and, at `cookieOffset`, the save cookie, then
QEMU's migration stream to the end of the file (src/qemu/qemu_saveimage.h, libvirt 9.0:
magic "LibvirtQemudSave", version, data_len, was_running, compressed, cookieOffset,
unused[14]).

A warm clone needs the saved domain's XML (the base's devices, in libvirt's migratable
form) and the stream, which it feeds to its own QEMU: libvirt's restore, even with a
changed XML (`dxml`), refuses another name, UUID or MAC ("does not match source").
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"LibvirtQemudSave"
HEADER = struct.Struct("<16sIIIII56s")


@dataclass(frozen=True)
class SaveImage:
    path: Path
    xml: str              # the saved domain's XML
    stream_offset: int    # where QEMU's migration stream starts
    compressed: int       # 0: raw (nbcloud saves raw)

    @classmethod
    def read(cls, path: Path) -> SaveImage:
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                raise ValueError(f"{path}: too short for a libvirt save image")
            magic, _version, data_len, _running, compressed, _cookie, _ = HEADER.unpack(head)
            if magic != MAGIC:
                raise ValueError(f"{path}: not a finished libvirt save image")
            data = f.read(data_len)
        end = data.find(b"\0")
        if len(data) < data_len or end < 0:
            raise ValueError(f"{path}: its domain XML is cut short")
        return cls(Path(path), data[:end].decode(), HEADER.size + data_len, compressed)

    def stream(self) -> bytes:
        """QEMU's migration stream (with x-ignore-shared: device state only, < 1 MiB)."""
        with open(self.path, "rb") as f:
            f.seek(self.stream_offset)
            return f.read()
