"""Screenshots of an instance's VGA screen, shown inline as PNG.

QEMU >= 7.1 hands libvirt a PNG; older ones a binary PPM (P6), which is converted here with
zlib alone: a PNG is an 8-byte signature and three chunks (IHDR, IDAT, IEND), and the pixel
rows need no filtering to be valid (filter type 0 on every row).
"""
from __future__ import annotations

import base64
import html
import struct
import zlib
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _ppm_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, maxval, offset of the pixels) of a P6 file; comments allowed."""
    fields: list[bytes] = []
    i = 0
    while len(fields) < 4:
        while i < len(data) and data[i:i + 1].isspace():
            i += 1
        if data[i:i + 1] == b"#":  # a comment runs to the end of its line
            while i < len(data) and data[i:i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        start = i
        while i < len(data) and not data[i:i + 1].isspace() and data[i:i + 1] != b"#":
            i += 1
        if start == i:
            raise ValueError("truncated PPM header")
        fields.append(data[start:i])
    if fields[0] != b"P6":
        raise ValueError(f"not a binary PPM (P6) image: it starts with {fields[0][:8]!r}")
    width, height, maxval = (int(f) for f in fields[1:])
    return width, height, maxval, i + 1  # one whitespace byte ends the header


def ppm_to_png(data: bytes) -> bytes:
    """A binary PPM (P6, 8 bits per sample) as PNG bytes (RGB, 8 bits)."""
    width, height, maxval, offset = _ppm_header(data)
    if maxval != 255:
        raise ValueError(f"PPM with maxval {maxval}: only 8-bit samples (255) are handled")
    stride = width * 3
    pixels = data[offset:offset + stride * height]
    if len(pixels) != stride * height:
        raise ValueError(f"PPM pixels truncated: {len(pixels)} of {stride * height} bytes")
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6))
            + _chunk(b"IEND", b""))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", data[16:24])


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def png_rows(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, pixel rows as RGB bytes) of an 8-bit RGB or RGBA PNG, not
    interlaced: what QEMU and `ppm_to_png` write. Enough to tell a blank screen."""
    width, height = png_size(data)
    depth, color, _, _, interlace = data[24:29]
    channels = {2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"PNG of bit depth {depth}, colour type {color}, interlace "
                         f"{interlace}: only 8-bit RGB/RGBA, not interlaced, is read here")
    idat, i = b"", 8
    while i < len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"IDAT":
            idat += data[i + 8:i + 8 + length]
        i += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], (prev[x - channels] if x >= channels else 0)
            line[x] = (line[x] + (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]) & 0xFF
        prev = line
        rgb = bytes(line) if channels == 3 else b"".join(
            bytes(line[x:x + 3]) for x in range(0, stride, 4))
        rows.append(rgb)
    return width, height, rows


def as_png(mime: str, data: bytes) -> bytes:
    """What libvirt returned (PNG or PPM) as PNG bytes."""
    if data.startswith(PNG_SIGNATURE):
        return data
    if data.startswith(b"P6"):
        return ppm_to_png(data)
    raise ValueError(f"the hypervisor returned a {mime or 'unknown'} screenshot, which "
                     "nbcloud cannot show (it handles PNG and PPM)")


@dataclass(frozen=True)
class Screenshot:
    """One capture of an instance's screen; shown as the picture in a notebook."""
    instance: str
    png: bytes

    @property
    def size(self) -> tuple[int, int]:
        return png_size(self.png)

    def colours(self) -> int:
        """How many distinct colours the screen shows (1: blank)."""
        _, _, rows = png_rows(self.png)
        return len({row[x:x + 3] for row in rows for x in range(0, len(row), 3)})

    def save(self, path) -> None:
        with open(path, "wb") as f:
            f.write(self.png)

    def _repr_png_(self) -> bytes:
        return self.png

    def _repr_html_(self) -> str:
        width, height = self.size
        data = base64.b64encode(self.png).decode()
        return (f"<img src='data:image/png;base64,{data}' width='{width}' height='{height}' "
                f"alt='screen of {html.escape(self.instance)}'/>")

    def __repr__(self) -> str:
        width, height = self.size
        return f"<Screenshot of {self.instance}: {width}x{height} PNG, {len(self.png)} bytes>"
