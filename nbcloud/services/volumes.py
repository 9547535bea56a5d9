"""Data volumes: the `Volume` handle and `cloud.volumes` (create, attach, detach, resize,
delete, list).

A volume is a qcow2 file named `NAME.TIER.qcow2` in a dir pool: `nbcloud-ssd` or
`nbcloud-hdd` (made on demand next to the instance pool) unless `pool=` names a pool of the
user's. Its tier is in its file name, so libvirt alone says what it is; the tier becomes
`<iotune>` caps when it is attached (see `TIERS`), which is what makes an hdd volume
measurably slower than an ssd one from inside the guest. ISOs (`NAME.iso`, see
cdrom.py) are volumes too and share the name space. Libvirt is the truth on what is
attached where (the domains' disk sources); the instance's metadata (`volumes`) and the
inventory (kind `volume`) record it as well.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from nbcloud.core.display import card
from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.spec import VolumeSpec, check_name, format_size, parse_size
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.images import IMAGE_POOL
from nbcloud.providers.libvirt.storage import VolumeInfo
from nbcloud.services.instances import INSTANCE_POOL, Instances

if TYPE_CHECKING:
    from nbcloud.api import Cloud

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
_FILE_RE = re.compile(r"^([a-z][a-z0-9-]{0,62})\.(?:(ssd|hdd)\.qcow2|iso)$")
_PREFIX = {"virtio": "vd", "sata": "sd"}


def tier_pool(tier: str) -> str:
    return f"nbcloud-{tier}"


class Volume:
    """A handle on one volume; properties read live state from libvirt."""

    def __init__(self, cloud: Cloud, name: str):
        self.cloud = cloud
        self.name = name

    @property
    def info(self) -> VolumeInfo:
        return self.cloud.volumes._info(self.name)

    @property
    def kind(self) -> str:
        """'disk' (a qcow2 data volume) or 'cdrom' (an ISO)."""
        return "cdrom" if self.info.name.endswith(".iso") else "disk"

    @property
    def tier(self) -> str:
        m = _FILE_RE.fullmatch(self.info.name)
        return (m.group(2) or "") if m else ""

    @property
    def pool(self) -> str:
        return self.info.pool

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def size(self) -> int:
        return self.info.capacity

    @property
    def attachments(self) -> list[tuple[str, str]]:
        """(instance, target) pairs; at most one for a data volume."""
        return self.cloud.backend.disk_users(self.path)

    @property
    def attached_to(self) -> str:
        return ",".join(sorted({dom for dom, _ in self.attachments}))

    def attach(self, instance: str) -> Volume:
        return self.cloud.volumes.attach(self.name, instance)

    def detach(self, instance: str | None = None) -> Volume:
        return self.cloud.volumes.detach(self.name, instance)

    def resize(self, size: int | str) -> Volume:
        return self.cloud.volumes.resize(self.name, size)

    def delete(self) -> None:
        self.cloud.volumes.delete(self.name)

    def _rows(self) -> dict[str, str]:
        info = self.info
        return {"kind": self.kind, "tier": self.tier or "-", "size": format_size(info.capacity),
                "used": format_size(info.allocation), "pool": info.pool,
                "attached to": self.attached_to or "-"}

    def __repr__(self) -> str:
        try:
            rows = self._rows()
        except CloudError:
            return f"<Volume {self.name} (gone)>"
        return f"<Volume {self.name} " + " ".join(
            f"{k.replace(' ', '_')}={v}" for k, v in rows.items()) + ">"

    def _repr_html_(self) -> str:
        try:
            rows = self._rows()
        except CloudError:
            return card("volume", self.name, None)
        return card("volume", self.name, rows)


class Volumes:
    """`cloud.volumes`: create, get, list, attach, detach, resize and delete volumes."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud

    # ----- lookup -----------------------------------------------------------------------
    def _all(self) -> dict[str, VolumeInfo]:
        found: dict[str, VolumeInfo] = {}
        for info in self.cloud.backend.all_volumes(exclude=RESERVED_POOLS):
            m = _FILE_RE.fullmatch(info.name)
            if m:
                found.setdefault(m.group(1), info)
        return found

    def _info(self, name: str) -> VolumeInfo:
        check_name(name, "volume name")
        info = self._all().get(name)
        if info is None:
            raise NotFound(f"volume {name!r} does not exist (see `%cloud volume list`)")
        return info

    def get(self, name: str) -> Volume:
        self._info(name)
        return Volume(self.cloud, name)

    __getitem__ = get

    def list(self, kind: str = "disk") -> list[Volume]:
        """Data volumes (`kind='disk'`), ISOs (`'cdrom'`) or both (`None`)."""
        out = []
        for name, info in sorted(self._all().items()):
            is_iso = info.name.endswith(".iso")
            if kind is None or (kind == "cdrom") == is_iso:
                out.append(Volume(self.cloud, name))
        return out

    def ensure_tier_pool(self, tier: str) -> str:
        """The dir pool of `tier`, made on first use under the same root as the others."""
        name = tier_pool(tier)
        root = self.cloud.paths[INSTANCE_POOL].parent
        self.cloud.backend.ensure_pool(name, str(root / tier))
        return name

    def _check_free_name(self, name: str) -> None:
        if name in self._all():
            raise AlreadyExists(f"volume {name!r} exists already: pick another name or "
                                "delete it first")

    def _check_pool(self, pool: str) -> None:
        check_name(pool, "pool name")
        if pool in RESERVED_POOLS:
            raise CloudError(f"pool {pool!r} holds nbcloud's instance disks and images, not "
                             "volumes: name a pool of your own or leave --pool out")
        self.cloud.backend.pool_info(pool)  # NotFound, one line

    # ----- inventory ----------------------------------------------------------------------
    def _record(self, name: str, state: str, kind: str = "volume", **spec) -> None:
        inv, uri = self.cloud.inventory, self.cloud.uri
        old = [r for r in inv.resources(uri, kind) if r.name == name]
        stack = old[0].stack if old else spec.pop("stack", "adhoc")
        spec.pop("stack", None)
        merged = {**(old[0].spec if old else {}), **spec}
        inv.put(uri, kind, name, state=state, spec=merged, stack=stack)

    def _kind(self, info: VolumeInfo) -> str:
        return "cdrom" if info.name.endswith(".iso") else "volume"

    def _operation(self, verb: str, name: str, kind: str, steps, **args):
        """Run `steps(undo)` between inventory.begin and finish; roll back on failure."""
        undo: list = []
        with self.cloud.inventory.operation(self.cloud.uri, verb, kind, name, **args):
            try:
                return steps(undo)
            except BaseException:
                Instances._undo(undo)
                raise

    # ----- verbs --------------------------------------------------------------------------
    def create(self, name: str, size: int | str = "1G", tier: str = "ssd",
               pool: str | None = None, *, stack: str = "adhoc") -> Volume:
        """Create an empty qcow2 volume of `size` in the pool of `tier` (or `pool`)."""
        spec = VolumeSpec(name, size, tier)
        if pool is not None:
            self._check_pool(pool)
        self._check_free_name(name)
        backend = self.cloud.backend

        def steps(undo: list) -> Volume:
            target_pool = pool or self.ensure_tier_pool(spec.tier)
            info = backend.create_volume(target_pool, f"{name}.{spec.tier}.qcow2",
                                         spec.capacity, "qcow2")
            undo.append(lambda: backend.delete_volume(target_pool, info.name))
            self._record(name, "available", tier=spec.tier, pool=target_pool,
                         size=info.capacity, attached_to="", stack=stack)
            return Volume(self.cloud, name)
        return self._operation("create", name, "volume", steps, size=spec.capacity,
                               tier=spec.tier, pool=pool or tier_pool(spec.tier))

    def _free_target(self, instance: str, bus: str) -> str:
        taken = self.cloud.backend.disk_targets(instance)
        prefix = _PREFIX[bus]
        for letter in "bcdefghijklmnopqrstuvwxyz" if bus == "virtio" else \
                "abcdefghijklmnopqrstuvwxyz":
            if prefix + letter not in taken:
                return prefix + letter
        raise CloudError(f"instance {instance!r} has no free {bus} disk slot left: detach "
                         "a volume first")

    def attach(self, name: str, instance: str, *, bus: str = "virtio") -> Volume:
        """Attach volume `name` to `instance`: live (hot-plug) if it runs, and persistently.

        A data volume gets its tier's `<iotune>` caps; an ISO is attached read-only. The
        disk's serial is the volume name, so the guest finds it as
        `/dev/disk/by-id/virtio-NAME` (or `/sys/block/vdX/serial`; virtio keeps the first
        20 characters)."""
        check_name(instance, "instance name")
        if bus not in _PREFIX:
            raise CloudError(f"bus {bus!r} is not offered: use virtio or sata")
        info = self._info(name)
        backend = self.cloud.backend
        meta = backend.metadata(instance)  # NotFound / NotManaged, one line
        users = backend.disk_users(info.path)
        if users:
            raise CloudError(f"volume {name!r} is attached to {users[0][0]!r} already: "
                             f"detach it first (`%cloud volume detach {name}`)")
        iso = info.name.endswith(".iso")
        if not iso and bus != "virtio":
            raise CloudError(f"bus {bus!r} is for ISOs; data volumes attach on virtio")
        m = _FILE_RE.fullmatch(info.name)
        tier = m.group(2) if m else None
        disk = lx.DataDisk(
            path=info.path, target=self._free_target(instance, bus),
            fmt="raw" if iso else "qcow2", serial=name[:20], readonly=iso,
            device="cdrom" if iso and bus != "virtio" else "disk", bus=bus,
            iotune=TIERS[tier] if tier else None)
        kind = self._kind(info)

        def steps(undo: list) -> Volume:
            backend.attach_disk(instance, disk)
            undo.append(lambda: backend.detach_disk(instance, disk.target))
            self._set_instance_volumes(instance, meta, add=name)
            self._record(name, "attached", kind, attached_to=instance, target=disk.target)
            return Volume(self.cloud, name)
        return self._operation("attach", name, kind, steps, instance=instance,
                               target=disk.target)

    def detach(self, name: str, instance: str | None = None) -> Volume:
        """Detach volume `name` (from `instance`, if given, which it must be attached to)."""
        if instance is not None:
            check_name(instance, "instance name")
        info = self._info(name)
        backend = self.cloud.backend
        users = backend.disk_users(info.path)
        if not users:
            raise CloudError(f"volume {name!r} is not attached to any instance")
        if instance is not None:
            users = [u for u in users if u[0] == instance]
            if not users:
                raise CloudError(f"volume {name!r} is not attached to {instance!r}: see "
                                 "`%cloud volume list`")
        kind = self._kind(info)

        def steps(undo: list) -> Volume:
            for dom, target in users:
                backend.detach_disk(dom, target)
                try:
                    self._set_instance_volumes(dom, backend.metadata(dom), remove=name)
                except CloudError:  # a domain nbcloud did not make: nothing recorded there
                    pass
            self._record(name, "available", kind, attached_to="", target="")
            return Volume(self.cloud, name)
        return self._operation("detach", name, kind, steps,
                               instance=",".join(u[0] for u in users))

    def resize(self, name: str, size: int | str) -> Volume:
        """Grow volume `name` to `size` (never shrink); live if its instance runs."""
        capacity = parse_size(size, "size")
        info = self._info(name)
        if info.name.endswith(".iso"):
            raise CloudError(f"volume {name!r} is an ISO: ISOs are read-only, make a new one")
        if capacity < info.capacity:
            raise CloudError(f"volume {name!r} is {format_size(info.capacity)}: resize only "
                             f"grows, so {format_size(capacity)} is refused")
        if capacity == info.capacity:
            return Volume(self.cloud, name)
        backend = self.cloud.backend
        running = [(dom, target) for dom, target in backend.disk_users(info.path)
                   if backend.is_running(dom)]

        def steps(undo: list) -> Volume:
            if running:
                backend.block_resize(running[0][0], running[0][1], capacity)
            else:
                backend.resize_volume(info.pool, info.name, capacity)
            self._record(name, "attached" if running else "available", size=capacity)
            return Volume(self.cloud, name)
        return self._operation("resize", name, "volume", steps, size=capacity,
                               live=bool(running))

    def delete(self, name: str) -> None:
        """Delete volume `name`; refused while it is attached."""
        info = self._info(name)
        backend = self.cloud.backend
        users = backend.disk_users(info.path)
        if users:
            raise CloudError(f"volume {name!r} is attached to {users[0][0]!r}: detach it "
                             f"first (`%cloud volume detach {name}`)")
        kind = self._kind(info)

        def steps(undo: list) -> None:
            if not backend.delete_volume(info.pool, info.name):
                raise CloudError(f"volume {name!r} was not deleted (libvirt refused)")
            self.cloud.inventory.remove(self.cloud.uri, kind, name)
        self._operation("delete", name, kind, steps, pool=info.pool)

    # ----- the instance side ----------------------------------------------------------------
    def _set_instance_volumes(self, instance: str, meta: dict[str, str], *,
                              add: str | None = None, remove: str | None = None) -> None:
        names = [v for v in meta.get("volumes", "").split(",") if v and v != remove]
        if add and add not in names:
            names.append(add)
        self.cloud.backend.set_metadata(instance, {**meta, "volumes": ",".join(names)})

    def released(self, instance: str, meta: dict[str, str]) -> None:
        """Record that the volumes of deleted instance `instance` are free again (its
        domain is gone, so libvirt holds them no more; their files are kept)."""
        inv, uri = self.cloud.inventory, self.cloud.uri
        for name in filter(None, meta.get("volumes", "").split(",")):
            for kind in ("volume", "cdrom"):
                if any(r.name == name for r in inv.resources(uri, kind)):
                    self._record(name, "available", kind, attached_to="", target="")
