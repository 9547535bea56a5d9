"""Storage pools and volumes."""
from __future__ import annotations

from pathlib import Path

import libvirt

from ...errors import NotFound
from . import xml as lx


class StorageMixin:
    conn: libvirt.virConnect

    def ensure_pool(self, name: str, path: str) -> bool:
        """Define, build, start and autostart a dir pool; True if anything was changed."""
        changed = False
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            pool = self.conn.storagePoolDefineXML(lx.pool_xml(name, path), 0)
            pool.build(0)
            changed = True
        if not pool.isActive():
            pool.create(0)
            changed = True
        if not pool.autostart():
            pool.setAutostart(1)
            changed = True
        return changed

    def pool(self, name: str) -> libvirt.virStoragePool:
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"storage pool {name!r} does not exist (run `nbcloud host up`)") \
                from None
        if not pool.isActive():
            pool.create(0)
        return pool

    def pool_names(self) -> list[str]:
        return sorted(p.name() for p in self.conn.listAllStoragePools(0))

    def volumes(self, pool: str) -> dict[str, tuple[str, int]]:
        """name -> (path, allocation bytes) of the volumes in `pool`."""
        p = self.pool(pool)
        p.refresh(0)
        return {v.name(): (v.path(), v.info()[2]) for v in p.listAllVolumes(0)}

    def volume_path(self, pool: str, name: str) -> str:
        try:
            return self.pool(pool).storageVolLookupByName(name).path()
        except libvirt.libvirtError:
            raise NotFound(f"volume {name!r} does not exist in pool {pool!r}") from None

    def upload_volume(self, pool: str, name: str, source: Path, fmt: str = "raw") -> str:
        """Create volume `name` from a local file through libvirt's stream API."""
        size = source.stat().st_size
        p = self.pool(pool)
        try:
            p.storageVolLookupByName(name).delete(0)
        except libvirt.libvirtError:
            pass
        vol = p.createXML(lx.volume_xml(name, size, fmt), 0)
        stream = self.conn.newStream(0)
        try:
            vol.upload(stream, 0, size, 0)
            with open(source, "rb") as f:
                stream.sendAll(lambda _s, n, fh: fh.read(n), f)
            stream.finish()
        except BaseException:
            stream.abort()
            vol.delete(0)
            raise
        return vol.path()

    def create_overlay(self, pool: str, name: str, backing_path: str, backing_fmt: str,
                       capacity: int) -> str:
        vol = self.pool(pool).createXML(
            lx.volume_xml(name, capacity, "qcow2", (backing_path, backing_fmt)), 0)
        return vol.path()

    def delete_volume(self, pool: str, name: str) -> bool:
        try:
            self.pool(pool).storageVolLookupByName(name).delete(0)
            return True
        except (libvirt.libvirtError, NotFound):
            return False
