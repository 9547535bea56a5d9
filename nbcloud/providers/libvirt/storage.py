"""Storage pools and volumes."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt

from nbcloud.core.errors import AlreadyExists, CloudError, HostError, NotFound
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.types import PoolInfo, VolumeInfo



def refresh(pool, seconds: float = 30.0) -> None:
    """Refresh `pool`'s volume list. libvirt refuses while a stream of another thread reads
    or writes one of its volumes (a remote daemon's image description being read, a copy
    to another host): wait for it, then list what libvirt has if it still runs."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            pool.refresh(0)
            return
        except libvirt.libvirtError as exc:
            if "asynchronous jobs" not in str(exc):
                raise
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

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

    def start_pools(self, names: list[str]) -> list[str]:
        """Start those of pools `names` that are defined and not running (libvirt
        autostarts pools once per boot, not when its daemon restarts); their names."""
        started = []
        for name in names:
            try:
                pool = self.conn.storagePoolLookupByName(name)
                if not pool.isActive():
                    pool.create(0)
                    started.append(name)
            except libvirt.libvirtError:
                continue   # not defined here (a tier pool made on first use)
        return started

    def pool(self, name: str) -> libvirt.virStoragePool:
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if not self.conn.isAlive():
                raise HostError(f"libvirt stopped answering: {exc.get_error_message()}") \
                    from None
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
        refresh(p)
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
        """Delete a volume; False if it (or its pool) is not there or libvirt refuses.
        A daemon that stopped answering is an error (HostError), not a False: the
        volume may well still be there."""
        try:
            self.pool(pool).storageVolLookupByName(name).delete(0)
            return True
        except (libvirt.libvirtError, NotFound) as exc:
            if not self.conn.isAlive():
                raise HostError(f"libvirt stopped answering while deleting volume {name!r}: "
                                f"{exc}") from None
            return False

    # ----- pools and volumes as resources (pools.py, volumes.py) --------------------------
    @staticmethod
    def _pool_path(pool: libvirt.virStoragePool) -> str:
        return ET.fromstring(pool.XMLDesc(0)).findtext("target/path", "")

    def pool_info(self, name: str) -> PoolInfo:
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"storage pool {name!r} does not exist (see `%cloud pool list`)") \
                from None
        count = 0
        if pool.isActive():
            pool.refresh(0)
            count = pool.numOfVolumes()
        _state, capacity, allocation, available = pool.info()
        return PoolInfo(name, self._pool_path(pool), bool(pool.isActive()), capacity,
                        allocation, available, count)

    def pools_info(self) -> list[PoolInfo]:
        return [self.pool_info(name) for name in self.pool_names()]

    def check_new_pool(self, name: str, path: str) -> None:
        """AlreadyExists if a pool has that name or that directory."""
        if name in self.pool_names():
            raise AlreadyExists(f"storage pool {name!r} exists already: pick another name")
        for other in self.conn.listAllStoragePools(0):
            if self._pool_path(other).rstrip("/") == path.rstrip("/"):
                raise AlreadyExists(f"path {path!r} is already the storage pool "
                                    f"{other.name()!r}: pick another directory")

    def create_pool(self, name: str, path: str) -> PoolInfo:
        """Define, build, start and autostart a new dir pool at `path`."""
        self.check_new_pool(name, path)
        try:
            pool = self.conn.storagePoolDefineXML(lx.pool_xml(name, path), 0)
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt refused pool {name!r}: {exc.get_error_message()}") \
                from None
        try:
            pool.build(0)
            pool.create(0)
            pool.setAutostart(1)
        except libvirt.libvirtError as exc:
            if pool.isActive():
                pool.destroy()
            pool.undefine()
            raise CloudError(f"pool {name!r} did not start: {exc.get_error_message()}") \
                from None
        return self.pool_info(name)

    def delete_pool(self, name: str) -> None:
        """Stop and undefine pool `name`; its directory stays (it may not be ours)."""
        pool = self.pool(name)
        pool.destroy()
        pool.undefine()

    def _volume_info(self, pool: str, vol: libvirt.virStorageVol) -> VolumeInfo:
        _type, capacity, allocation = vol.info()
        return VolumeInfo(pool, vol.name(), vol.path(), capacity, allocation)

    def all_volumes(self, exclude: tuple[str, ...] = ()) -> list[VolumeInfo]:
        """Every volume of every active pool not in `exclude` (pools refreshed first)."""
        out = []
        for pool in self.conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            if pool.name() in exclude:
                continue
            try:
                pool.refresh(0)
                out += [self._volume_info(pool.name(), v) for v in pool.listAllVolumes(0)]
            except libvirt.libvirtError:  # a pool stopped or a volume went meanwhile
                continue
        return out

    def volume_info(self, pool: str, name: str) -> VolumeInfo:
        try:
            vol = self.pool(pool).storageVolLookupByName(name)
        except libvirt.libvirtError:
            raise NotFound(f"volume {name!r} does not exist in pool {pool!r}") from None
        return self._volume_info(pool, vol)

    def create_volume(self, pool: str, name: str, capacity: int, fmt: str = "qcow2") \
            -> VolumeInfo:
        try:
            vol = self.pool(pool).createXML(lx.volume_xml(name, capacity, fmt), 0)
        except libvirt.libvirtError as exc:
            raise CloudError(f"libvirt refused volume {name!r} in pool {pool!r}: "
                             f"{exc.get_error_message()}") from None
        return self._volume_info(pool, vol)

    def resize_volume(self, pool: str, name: str, capacity: int) -> None:
        """Grow a volume nobody is running on (qemu-img resize, by libvirt)."""
        vol = self.pool(pool).storageVolLookupByName(name)
        try:
            vol.resize(capacity, 0)
        except libvirt.libvirtError as exc:
            raise CloudError(f"volume {name!r} was not resized: {exc.get_error_message()}") \
                from None

    def upload_volume_stream(self, pool: str, name: str, size: int,
                             read: Callable[[int], bytes]) -> str:
        """Create volume `name` of `size` bytes from `read(n)` calls (streamed, never whole
        in memory); the volume is deleted if anything fails, including `read`."""
        p = self.pool(pool)
        try:
            vol = p.createXML(lx.volume_xml(name, size, "raw"), 0)
        except libvirt.libvirtError as exc:
            raise CloudError(f"cannot create volume {name!r} in pool {pool!r}: "
                             f"{exc.get_error_message()}") from None
        stream = self.conn.newStream(0)
        try:
            vol.upload(stream, 0, size, 0)
            stream.sendAll(lambda _s, n, _o: read(n), None)
            stream.finish()
        except BaseException:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
            vol.delete(0)
            raise
        return vol.path()
