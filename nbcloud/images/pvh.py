"""The tiny image's kernel, uncompressed for PVH direct boot.

Under TCG the kernel's own decompressor costs about 0.3 s of every boot; QEMU loads a PVH
ELF (one with the Xen PHYS32_ENTRY note) straight into memory instead. The Debian cloud
kernel's bzImage carries an LZ4 (legacy frame) or xz payload: unpacked here with the
standard library and a small LZ4 block decoder.
"""
from __future__ import annotations

import lzma
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

Progress = Callable[[str], None]

LZ4_LEGACY = 0x184C2102
# An ELF note "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18): QEMU then boots the ELF directly.
PVH_NOTE = re.compile(rb"\x04\x00\x00\x00[\x04\x08]\x00\x00\x00\x12\x00\x00\x00Xen\x00")


def pvh_kernel(kernels_dir: Path, bzimage: Path, key: str, say: Progress) -> Path | None:
    """The vmlinux inside ``bzimage``, cached per kernel package, or None if not PVH-bootable.

    Under TCG the kernel's own decompressor costs about 0.3 s of every boot; QEMU loads
    a PVH ELF straight into memory instead.
    """
    cached = kernels_dir / f"{key}.vmlinux"
    if cached.exists():
        return cached
    say("unpacking the kernel for PVH boot (once per kernel version)")
    vmlinux = _vmlinux(bzimage.read_bytes())
    if vmlinux is None:
        say("the kernel is not PVH-bootable: booting the compressed image")
        return None
    kernels_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=kernels_dir, suffix=".tmp", delete=False) as tmp:
        tmp.write(vmlinux)
    os.replace(tmp.name, cached)
    return cached


def _vmlinux(bz: bytes) -> bytes | None:
    if bz[0x202:0x206] != b"HdrS":
        return None
    start = ((bz[0x1F1] or 4) + 1) * 512  # the setup sectors come first
    offset, length = struct.unpack_from("<II", bz, 0x248)  # payload_offset, payload_length
    payload = bz[start + offset:start + offset + length]
    if payload[:4] == struct.pack("<I", LZ4_LEGACY):
        data = _unlz4_legacy(payload)
    elif payload[:6] == b"\xfd7zXZ\x00":
        data = lzma.LZMADecompressor().decompress(payload)
    elif payload[:2] == b"\x1f\x8b":
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    else:
        return None
    return data if data[:4] == b"\x7fELF" and PVH_NOTE.search(data) else None


def _unlz4_legacy(data: bytes) -> bytes:
    """LZ4 "legacy" frames, as the kernel build writes them (blocks of up to 8 MiB)."""
    out, pos = bytearray(), 4
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if size == LZ4_LEGACY:
            continue
        if pos + size > len(data):  # the decompressed size the kernel build appends
            break
        _unlz4_block(data[pos:pos + size], out)
        pos += size
    return bytes(out)


def _lz4_length(src: bytes, i: int, length: int) -> tuple[int, int]:
    """An LZ4 length field: 15 in the token means more bytes follow (each 255: more yet)."""
    if length == 15:
        while src[i] == 255:
            length += 255
            i += 1
        length += src[i]
        i += 1
    return length, i


def _unlz4_block(src: bytes, out: bytearray) -> None:
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        literals, i = _lz4_length(src, i, token >> 4)
        out += src[i:i + literals]
        i += literals
        if i >= n:
            break
        offset = src[i] | src[i + 1] << 8
        i += 2
        length, i = _lz4_length(src, i, token & 15)
        length += 4
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
            continue
        while length > 0:  # an overlapping match repeats what it copies
            chunk = out[start:start + min(offset, length)]
            out += chunk
            start += len(chunk)
            length -= len(chunk)


# --- the initramfs ------------------------------------------------------------------
