"""`nbreseed`: a 147-byte static x86-64 program of the tiny image that calls
ioctl(0, RNDRESEEDCRNG) and exits with the errno (0 on success).

A warm clone runs `nbreseed </dev/urandom` right after writing the host's seed into
/dev/urandom: the write alone only mixes the kernel's input pool, and the Debian cloud
kernel (no vmgenid driver) would go on drawing from the saved base's CRNG key until its
next scheduled reseed, up to a minute later. busybox has no ioctl applet, and a C
compiler is no part of the build, so the program is written here, byte by byte.
"""
from __future__ import annotations

import struct

BASE = 0x400000
CODE = bytes.fromhex(
    "b810000000"    # mov eax, 16 (SYS_ioctl)
    "31ff"          # xor edi, edi        fd 0
    "be07520000"    # mov esi, 0x5207     RNDRESEEDCRNG = _IO('R', 7)
    "31d2"          # xor edx, edx
    "0f05"          # syscall
    "89c7"          # mov edi, eax
    "f7df"          # neg edi             exit status = errno
    "b83c000000"    # mov eax, 60 (SYS_exit)
    "0f05")         # syscall


def nbreseed() -> bytes:
    """The ELF file: header, one loadable read+execute segment, the code."""
    ehsize, phsize = 64, 56
    entry = BASE + ehsize + phsize
    total = ehsize + phsize + len(CODE)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)   # 64-bit, little-endian, SysV
    eh = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, entry, ehsize, 0, 0,
                             ehsize, phsize, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)  # PT_LOAD R+X
    return eh + ph + CODE
