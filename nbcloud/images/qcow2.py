"""The qcow2 header, read before an imported image is accepted.

A qcow2 file can make QEMU open other files of the host: a backing file, or (qcow2 v3) an
external data file, whose name sits in a header extension. An imported image names paths
on the machine that made it, which here would be any host file served to the guest as its
disk. So an image is accepted only if its header holds nothing but what nbcloud knows to
be harmless: no backing file, no encryption, no incompatible feature beyond the dirty
bit, the compression type and extended L2 entries, and header extensions of known kinds
only, ending inside the header. (`qemu-img info` is asked again once the file is stored:
providers/libvirt/images.py.)

Layout (docs/interop/qcow2.txt in QEMU): big-endian; magic 0-3, version 4-7, backing file
offset 8-15, backing file size 16-19, cluster bits 20-23, size 24-31, crypt method 32-35,
...; version 3 adds incompatible features 72-79, compatible 80-87, autoclear 88-95,
refcount order 96-99, header length 100-103. Extensions follow the header: type (4),
length (4), data padded to 8 bytes, until type 0.
"""
from __future__ import annotations

import struct

MAGIC = b"QFI\xfb"
V2_HEADER = 72
V3_HEADER = 104

INCOMPATIBLE = {0: "dirty", 1: "corrupt", 2: "external data file", 3: "compression type",
                4: "extended L2 entries"}
ACCEPTED_INCOMPATIBLE = (1 << 0) | (1 << 3) | (1 << 4)
EXT_END = 0
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_NAMES = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_ENCRYPTION = 0x0537BE77
EXT_DATA_FILE = 0x44415441
ACCEPTED_EXTENSIONS = (EXT_BACKING_FORMAT, EXT_FEATURE_NAMES, EXT_BITMAPS)
_FLATTEN = "convert it with `qemu-img convert -O qcow2` first"


class Refused(ValueError):
    """What makes a qcow2 header unacceptable, in one line."""


def virtual_size(head: bytes) -> int:
    """The guest-visible size of the qcow2 image whose first bytes are `head`, after
    refusing any header that could make QEMU open another file (see the module)."""
    if len(head) < V2_HEADER:
        raise Refused("the qcow2 header is cut short: the file is truncated")
    version, backing_offset, _backing_size, cluster_bits, size, crypt = \
        struct.unpack_from(">IQIIQI", head, 4)
    if version not in (2, 3):
        raise Refused(f"qcow2 version {version} is not supported (2 or 3 are)")
    if backing_offset:
        raise Refused(f"the qcow2 image has a backing file (a path on the machine that "
                      f"made it): {_FLATTEN}")
    if crypt:
        raise Refused("the qcow2 image is encrypted: QEMU would need its secret; "
                      f"{_FLATTEN} without encryption")
    if not 9 <= cluster_bits <= 21:
        raise Refused(f"the qcow2 cluster size 2^{cluster_bits} is not one QEMU writes "
                      "(2^9 to 2^21)")
    end = V2_HEADER
    if version == 3:
        if len(head) < V3_HEADER:
            raise Refused("the qcow2 header is cut short: the file is truncated")
        incompatible, = struct.unpack_from(">Q", head, 72)
        end, = struct.unpack_from(">I", head, 100)
        _check_incompatible(incompatible)
        if end < V3_HEADER or end % 8 or end >= 1 << cluster_bits:
            raise Refused(f"the qcow2 header length {end} is not valid")
    _check_extensions(head, end, min(len(head), 1 << cluster_bits))
    return size


def _check_incompatible(bits: int) -> None:
    if bits & (1 << 2):
        raise Refused("the qcow2 image keeps its data in an external data file (a path "
                      f"on the machine that made it): {_FLATTEN}")
    if bits & (1 << 1):
        raise Refused("the qcow2 image is marked corrupt: repair it with `qemu-img "
                      "check -r all` first")
    unknown = bits & ~ACCEPTED_INCOMPATIBLE
    if unknown:
        bit = unknown.bit_length() - 1
        raise Refused(f"the qcow2 image has incompatible feature bit {bit}, which nbcloud "
                      f"does not know: {_FLATTEN} with this host's qemu-img")


def _check_extensions(head: bytes, offset: int, limit: int) -> None:
    """Walk the header extensions from `offset`; each must be known and harmless, and
    the list must end (type 0) before `limit` (the first cluster, or what was read)."""
    while True:
        if offset + 8 > limit:
            raise Refused("the qcow2 header extensions do not end within the header: "
                          "the file is damaged or not one QEMU wrote")
        kind, length = struct.unpack_from(">II", head, offset)
        if kind == EXT_END:
            return
        if kind == EXT_DATA_FILE:
            raise Refused("the qcow2 image names an external data file (a path on the "
                          f"machine that made it): {_FLATTEN}")
        if kind == EXT_ENCRYPTION:
            raise Refused("the qcow2 image is encrypted: QEMU would need its secret; "
                          f"{_FLATTEN} without encryption")
        if kind not in ACCEPTED_EXTENSIONS:
            raise Refused(f"the qcow2 image has header extension 0x{kind:08x}, which "
                          f"nbcloud does not know: {_FLATTEN} with this host's qemu-img")
        offset += 8 + (length + 7) // 8 * 8
