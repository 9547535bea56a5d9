"""Volumes from one host to another, through libvirt's storage streams (no shared
filesystem, no shell: what libvirt can read on one daemon it writes on the other).

Used to put an image on a host before an instance boots or lands there (a kernel-boot
image's kernel and initramfs, a disk image's backing file: the same on every host, so an
instance's overlay means the same thing everywhere), and to carry an instance's read-only
seed, which live migration does not copy.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from nbcloud.core.errors import CloudError, NotFound
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.storage import refresh
from nbcloud.providers.libvirt.volumes import IMAGE_POOL

CHUNK = 256 << 10


def read_volume(provider, pool: str, name: str, limit: int = 1 << 20) -> bytes:
    """The bytes of a small volume (an image's description), wherever its host is."""
    try:
        vol = provider.pool(pool).storageVolLookupByName(name)
    except libvirt.libvirtError:
        raise NotFound(f"volume {name!r} does not exist in pool {pool!r}") from None
    size = vol.info()[1]
    if size > limit:
        raise CloudError(f"volume {name!r} is {size} bytes: more than a description")
    stream = provider.conn.newStream(0)
    chunks: list[bytes] = []
    vol.download(stream, 0, 0, 0)
    stream.recvAll(lambda _s, data, out: out.append(data), chunks)
    stream.finish()
    return b"".join(chunks)


def volume_facts(vol: libvirt.virStorageVol) -> tuple[str, int, tuple[str, str] | None]:
    """(format, capacity, (backing path, backing format) or None) of a volume."""
    root = ET.fromstring(vol.XMLDesc(0))
    fmt = root.find("target/format")
    backing = root.find("backingStore/path")
    bfmt = root.find("backingStore/format")
    return (fmt.get("type", "raw") if fmt is not None else "raw",
            int(root.findtext("capacity", "0")),
            (backing.text or "", bfmt.get("type", "raw") if bfmt is not None else "raw")
            if backing is not None and backing.text else None)


def copy_volume(src, dst, pool: str, name: str, progress=None) -> str:
    """Copy volume `name` of `pool` from host provider `src` to `dst` (replacing one of
    that name there), byte for byte; returns its path on `dst`. Nothing is left on `dst`
    if the copy fails."""
    try:
        vol = src.pool(pool).storageVolLookupByName(name)
    except libvirt.libvirtError:
        raise NotFound(f"volume {name!r} is not in pool {pool!r} of {src.uri}") from None
    size = vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]  # the file's length
    target = dst.pool(pool)
    try:
        target.storageVolLookupByName(name).delete(0)
    except libvirt.libvirtError:
        pass
    # the file is copied as it is (a qcow2 keeps its header): created raw, so libvirt
    # neither formats nor resizes what the bytes will say
    new = target.createXML(lx.volume_xml(name, max(size, 1), "raw"), 0)
    inbound, outbound = src.conn.newStream(0), dst.conn.newStream(0)
    try:
        vol.download(inbound, 0, 0, 0)
        new.upload(outbound, 0, 0, 0)
        done = 0
        while True:
            data = inbound.recv(CHUNK)
            if isinstance(data, int) and data == -2:
                continue        # would block: not on a blocking stream, but be safe
            if not data:
                break
            outbound.send(data)
            done += len(data)
            if progress is not None:
                progress(done, size)
        inbound.finish()
        outbound.finish()
    except BaseException:
        for stream in (inbound, outbound):
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
        new.delete(0)
        raise
    refresh(target)
    return target.storageVolLookupByName(name).path()


def image_volumes(provider, image: str) -> list[str]:
    """The volumes of image `image` in `provider`'s image pool, its description last."""
    names = sorted(v for v in provider.volumes(IMAGE_POOL) if v.startswith(f"{image}."))
    return sorted(names, key=lambda v: v.endswith(".json"))


def ensure_image(src, dst, image: str) -> list[str]:
    """Put image `image` of host `src` on host `dst` unless `dst` has the same (by its
    build digest); returns the volumes copied. The description goes last, so an
    interrupted copy leaves no half image listed."""
    want = src.images.get(image)
    if dst.images.exists(image) and dst.images.get(image).digest == want.digest:
        return []
    copied = []
    for vol in image_volumes(src, image):
        copy_volume(src, dst, IMAGE_POOL, vol)
        copied.append(vol)
    return copied
