"""Data volumes and cdroms on libvirt: qcow2 files `NAME.TIER.qcow2` and ISOs `NAME.iso`
in dir pools, attached as virtio (or SATA) disks with the tier's `<iotune>` caps.

A volume's tier is in its file name, so libvirt alone says what it is. Volumes live in
`nbcloud-ssd` / `nbcloud-hdd` (made on demand next to the instance pool) unless the user
names a pool of their own; the pools that hold instance disks and images never hold them.
"""
from __future__ import annotations

import re
from pathlib import Path

from nbcloud.core.errors import CloudError, NotFound
from nbcloud.core.spec import check_name
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.types import DataVolume, VolumeInfo

INSTANCE_POOL = "nbcloud"
IMAGE_POOL = "nbcloud-images"
#: The caps of each tier, per disk: a SATA SSD, and a cold-storage HDD volume (a public
#: cloud's throughput-optimised HDD starts near 12 MB/s per TiB). Bytes/s are decimal MB,
#: as disk makers count them. The hdd cap is kept well below what a TCG guest can write
#: on a busy 2-core host (25 MB/s was seen), so the difference shows inside the guest.
TIERS: dict[str, lx.IOTune] = {
    "ssd": lx.IOTune(total_bytes_sec=200_000_000, total_iops_sec=5000),
    "hdd": lx.IOTune(total_bytes_sec=10_000_000, total_iops_sec=100),
}
#: Pools that hold instance disks and images, never volumes.
RESERVED_POOLS = (INSTANCE_POOL, IMAGE_POOL)
FILE_RE = re.compile(r"^([a-z][a-z0-9-]{0,62})\.(?:(ssd|hdd)\.qcow2|iso)$")
_PREFIX = {"virtio": "vd", "sata": "sd"}


def tier_pool(tier: str) -> str:
    return f"nbcloud-{tier}"


def own_pools() -> tuple[str, ...]:
    """nbcloud's own pools: `pool delete` leaves them alone."""
    return RESERVED_POOLS + tuple(tier_pool(t) for t in TIERS)


def _data_volume(name: str, info: VolumeInfo) -> DataVolume:
    m = FILE_RE.fullmatch(info.name)
    tier = (m.group(2) or "") if m else ""
    kind = "cdrom" if info.name.endswith(".iso") else "disk"
    return DataVolume(name, kind, tier, info.pool, info.path, info.capacity,
                      info.allocation, serial=name[:20])   # attach gives it this serial


class DataVolumeMixin:
    """The volume operations of `LibvirtProvider` (see providers/base.py, BlockStorage)."""

    paths: dict[str, Path]
    volume_granularity = 1   # a qcow2 file is as big as asked

    def own_pools(self) -> tuple[str, ...]:
        return own_pools()

    def data_volumes(self) -> dict[str, DataVolume]:
        """Every data volume and cdrom, by name (one listing of every pool)."""
        found: dict[str, DataVolume] = {}
        for info in self.all_volumes(exclude=RESERVED_POOLS):
            m = FILE_RE.fullmatch(info.name)
            if m:
                found.setdefault(m.group(1), _data_volume(m.group(1), info))
        return found

    def data_volume(self, name: str) -> DataVolume:
        check_name(name, "volume name")
        vol = self.data_volumes().get(name)
        if vol is None:
            raise NotFound(f"volume {name!r} does not exist (see `%cloud volume list`)")
        return vol

    def check_volume_pool(self, pool: str) -> None:
        """Refuse nbcloud's own pools and pools that do not exist, in one line."""
        check_name(pool, "pool name")
        if pool in RESERVED_POOLS:
            raise CloudError(f"pool {pool!r} holds nbcloud's instance disks and images, not "
                             "volumes: name a pool of your own or leave --pool out")
        self.pool_info(pool)  # NotFound, one line

    def ensure_tier_pool(self, tier: str) -> str:
        """The dir pool of `tier`, made on first use under the same root as the others."""
        name = tier_pool(tier)
        self.ensure_pool(name, str(self.paths[INSTANCE_POOL].parent / tier))
        return name

    def create_data_volume(self, name: str, capacity: int, tier: str,
                           pool: str | None = None) -> DataVolume:
        target = pool or self.ensure_tier_pool(tier)
        info = self.create_volume(target, f"{name}.{tier}.qcow2", capacity, "qcow2")
        return _data_volume(name, info)

    def store_iso(self, name: str, iso: Path, pool: str | None = None) -> DataVolume:
        """Upload ISO file `iso` as cdrom `name` (the ssd pool unless `pool`)."""
        target = pool or self.ensure_tier_pool("ssd")
        self.upload_volume(target, f"{name}.iso", iso, "raw")
        return _data_volume(name, self.volume_info(target, f"{name}.iso"))

    def delete_data_volume(self, vol: DataVolume) -> None:
        if not self.delete_volume(vol.pool, Path(vol.path).name):
            raise CloudError(f"volume {vol.name!r} was not deleted (libvirt refused)")

    def volume_users(self, vol: DataVolume) -> list[tuple[str, str]]:
        """(instance, target) pairs; at most one for a data volume."""
        return self.disk_users(vol.path)

    def _free_target(self, instance: str, bus: str) -> str:
        taken = self.disk_targets(instance)
        prefix = _PREFIX[bus]
        for letter in "bcdefghijklmnopqrstuvwxyz" if bus == "virtio" else \
                "abcdefghijklmnopqrstuvwxyz":
            if prefix + letter not in taken:
                return prefix + letter
        raise CloudError(f"instance {instance!r} has no free {bus} disk slot left: detach "
                         "a volume first")

    def attach_volume(self, vol: DataVolume, instance: str, bus: str = "virtio") -> str:
        """Attach `vol` to `instance` (live if it runs, and persistently); returns the
        target. A disk gets its tier's `<iotune>` caps; an ISO is attached read-only. The
        disk's serial is the volume name, so the guest finds it as
        `/dev/disk/by-id/virtio-NAME` (virtio keeps the first 20 characters)."""
        if bus not in _PREFIX:
            raise CloudError(f"bus {bus!r} is not offered: use virtio or sata")
        iso = vol.kind == "cdrom"
        if not iso and bus != "virtio":
            raise CloudError(f"bus {bus!r} is for ISOs; data volumes attach on virtio")
        disk = lx.DataDisk(
            path=vol.path, target=self._free_target(instance, bus),
            fmt="raw" if iso else "qcow2", serial=vol.name[:20], readonly=iso,
            device="cdrom" if iso and bus != "virtio" else "disk", bus=bus,
            iotune=TIERS[vol.tier] if vol.tier else None)
        self.attach_disk(instance, disk)
        return disk.target

    def detach_volume(self, instance: str, target: str) -> None:
        self.detach_disk(instance, target)

    def grow_volume(self, vol: DataVolume, capacity: int) -> bool:
        """Grow `vol` to `capacity` bytes: live through its running instance if it has
        one (returns True), else the file itself."""
        running = [(dom, target) for dom, target in self.volume_users(vol)
                   if self.is_running(dom)]
        if running:
            self.block_resize(running[0][0], running[0][1], capacity)
        else:
            self.resize_volume(vol.pool, Path(vol.path).name, capacity)
        return bool(running)
