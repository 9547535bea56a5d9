"""Data volumes: the `Volume` handle and `cloud.volumes` (create, attach, detach, resize,
delete, list).

Where a volume lives and how its tier is enforced is the provider's (on libvirt: a qcow2
file `NAME.TIER.qcow2` in a tier pool, `<iotune>` caps on attach; see
providers/libvirt/volumes.py). This service validates, keeps the inventory (kind `volume`,
or `cdrom` for ISOs, which share the name space) and the instance's `volumes` metadata,
and logs every change as an operation. The provider is the truth on what is attached where.
"""
from __future__ import annotations

from nbcloud.context import Context
from nbcloud.core.errors import AlreadyExists, CloudError
from nbcloud.core.events import INSTANCE_DELETED
from nbcloud.core.handle import Handle
from nbcloud.core.spec import VolumeSpec, check_name, format_size, parse_size
from nbcloud.core.undo import Undo
from nbcloud.providers.types import DataVolume


class Volume(Handle):
    """A handle on one volume; properties read live state from the provider."""

    noun = "volume"

    @property
    def info(self) -> DataVolume:
        return self.service.info(self.name)

    @property
    def kind(self) -> str:
        """'disk' (a qcow2 data volume) or 'cdrom' (an ISO)."""
        return self.info.kind

    @property
    def tier(self) -> str:
        return self.info.tier

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
    def serial(self) -> str:
        """The serial the guest sees on the attached disk (`/sys/block/vdX/serial`)."""
        return self.info.serial

    @property
    def attachments(self) -> list[tuple[str, str]]:
        """(instance, target) pairs; at most one for a data volume."""
        return self.service.provider.volume_users(self.info)

    @property
    def attached_to(self) -> str:
        return ",".join(sorted({dom for dom, _ in self.attachments}))

    def attach(self, instance: str) -> Volume:
        return self.service.attach(self.name, instance)

    def detach(self, instance: str | None = None) -> Volume:
        return self.service.detach(self.name, instance)

    def resize(self, size: int | str) -> Volume:
        return self.service.resize(self.name, size)

    def delete(self) -> None:
        self.service.delete(self.name)

    def rows(self) -> dict[str, object]:
        info = self.info
        return {"kind": info.kind, "tier": info.tier or "-",
                "size": format_size(info.capacity), "used": format_size(info.allocation),
                "pool": info.pool, "attached to": self.attached_to or "-"}


class Volumes:
    """`cloud.volumes`: create, get, list, attach, detach, resize and delete volumes."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider
        # the volumes of a deleted instance are free again (their files are kept)
        ctx.events.on(INSTANCE_DELETED, self._instance_deleted)

    # ----- lookup -----------------------------------------------------------------------
    def all(self) -> dict[str, DataVolume]:
        """Every volume and cdrom the provider has, by name (one bulk listing)."""
        return self.provider.data_volumes()

    def info(self, name: str) -> DataVolume:
        """What the provider has for volume `name`; NotFound in one line."""
        return self.provider.data_volume(name)

    def get(self, name: str) -> Volume:
        self.info(name)
        return Volume(self, name)

    __getitem__ = get

    def list(self, kind: str | None = "disk") -> list[Volume]:
        """Data volumes (`kind='disk'`), ISOs (`'cdrom'`) or both (`None`)."""
        return [Volume(self, name) for name, vol in sorted(self.all().items())
                if kind is None or vol.kind == kind]

    def check_free_name(self, name: str) -> None:
        if name in self.all():
            raise AlreadyExists(f"volume {name!r} exists already: pick another name or "
                                "delete it first")

    # ----- inventory ----------------------------------------------------------------------
    def record(self, name: str, state: str, kind: str = "volume", **spec) -> None:
        """Merge `spec` into volume `name`'s inventory record (made if absent, in the
        `stack` given, else adhoc) in one transaction, and set its state."""
        stack = spec.pop("stack", None)
        self.ctx.inventory.update(kind, name, lambda old: {**(old.spec if old else {}), **spec},
                                  state=state, stack=stack)

    @staticmethod
    def inventory_kind(vol: DataVolume) -> str:
        return "cdrom" if vol.kind == "cdrom" else "volume"

    def operation(self, verb: str, name: str, kind: str, steps, **args):
        """Run `steps(undo, op)` between the operation's intent and outcome (`op.detail`
        is its outcome's detail); on failure undo what it did, last first."""
        with self.ctx.inventory.operation(verb, kind, name, **args) as op, Undo() as undo:
            return steps(undo, op)

    # ----- verbs --------------------------------------------------------------------------
    def create(self, name: str, size: int | str = "1G", tier: str = "ssd",
               pool: str | None = None, *, stack: str = "adhoc") -> Volume:
        """Create an empty volume of `size` in `tier` (or in `pool`)."""
        spec = VolumeSpec(name, size, tier)
        if pool is not None:
            self.provider.check_volume_pool(pool)
        self.check_free_name(name)

        def steps(undo: Undo, op) -> Volume:
            vol = self.provider.create_data_volume(name, spec.capacity, spec.tier, pool)
            undo.add(lambda: self.provider.delete_data_volume(vol))
            self.record(name, "available", tier=spec.tier, pool=vol.pool,
                        size=vol.capacity, attached_to="", stack=stack)
            op.detail = vol.pool
            return Volume(self, name)
        return self.operation("create", name, "volume", steps, size=spec.capacity,
                              tier=spec.tier, pool=pool)

    def attach(self, name: str, instance: str, *, bus: str = "virtio") -> Volume:
        """Attach volume `name` to `instance`: live (hot-plug) if it runs, and
        persistently. A data volume gets its tier's caps; an ISO is attached read-only."""
        check_name(instance, "instance name")
        vol = self.info(name)
        meta = self.provider.metadata(instance)  # NotFound / NotManaged, one line
        users = self.provider.volume_users(vol)
        if users:
            raise CloudError(f"volume {name!r} is attached to {users[0][0]!r} already: "
                             f"detach it first (`%cloud volume detach {name}`)")
        kind = self.inventory_kind(vol)

        def steps(undo: Undo, op) -> Volume:
            target = self.provider.attach_volume(vol, instance, bus)
            undo.add(lambda: self.provider.detach_volume(instance, target))
            self._set_instance_volumes(instance, meta, add=name)
            self.record(name, "attached", kind, attached_to=instance, target=target)
            op.detail = target
            return Volume(self, name)
        return self.operation("attach", name, kind, steps, instance=instance)

    def detach(self, name: str, instance: str | None = None) -> Volume:
        """Detach volume `name` (from `instance`, if given, which it must be attached to)."""
        if instance is not None:
            check_name(instance, "instance name")
        vol = self.info(name)
        users = self.provider.volume_users(vol)
        if not users:
            raise CloudError(f"volume {name!r} is not attached to any instance")
        if instance is not None:
            users = [u for u in users if u[0] == instance]
            if not users:
                raise CloudError(f"volume {name!r} is not attached to {instance!r}: see "
                                 "`%cloud volume list`")
        kind = self.inventory_kind(vol)

        def steps(undo: Undo, op) -> Volume:
            for dom, target in users:
                self.provider.detach_volume(dom, target)
                try:
                    self._set_instance_volumes(dom, self.provider.metadata(dom), remove=name)
                except CloudError:  # a domain nbcloud did not make: nothing recorded there
                    pass
            self.record(name, "available", kind, attached_to="", target="")
            return Volume(self, name)
        return self.operation("detach", name, kind, steps,
                              instance=",".join(u[0] for u in users))

    def resize(self, name: str, size: int | str) -> Volume:
        """Grow volume `name` to `size` (never shrink); live if its instance runs."""
        capacity = parse_size(size, "size")
        vol = self.info(name)
        if vol.kind == "cdrom":
            raise CloudError(f"volume {name!r} is an ISO: ISOs are read-only, make a new one")
        if capacity < vol.capacity:
            raise CloudError(f"volume {name!r} is {format_size(vol.capacity)}: resize only "
                             f"grows, so {format_size(capacity)} is refused")
        if capacity == vol.capacity:
            return Volume(self, name)
        with self.ctx.inventory.operation("resize", "volume", name, size=capacity) as op:
            live = self.provider.grow_volume(vol, capacity)
            self.record(name, "attached" if live else "available", size=capacity)
            op.detail = "live" if live else ""
        return Volume(self, name)

    def delete(self, name: str) -> None:
        """Delete volume `name`; refused while it is attached."""
        vol = self.info(name)
        users = self.provider.volume_users(vol)
        if users:
            raise CloudError(f"volume {name!r} is attached to {users[0][0]!r}: detach it "
                             f"first (`%cloud volume detach {name}`)")
        kind = self.inventory_kind(vol)

        def steps(undo: Undo, op) -> None:
            self.provider.delete_data_volume(vol)
            self.ctx.inventory.remove(kind, name)
        self.operation("delete", name, kind, steps, pool=vol.pool)

    # ----- the instance side ----------------------------------------------------------------
    def _set_instance_volumes(self, instance: str, meta: dict[str, str], *,
                              add: str | None = None, remove: str | None = None) -> None:
        names = [v for v in meta.get("volumes", "").split(",") if v and v != remove]
        if add and add not in names:
            names.append(add)
        self.provider.set_metadata(instance, {**meta, "volumes": ",".join(names)})

    def _instance_deleted(self, name: str, meta: dict[str, str]) -> None:
        """Record that the volumes of deleted instance `name` are free again (its
        definition is gone, so the provider holds them no more; their files are kept)."""
        self.released(meta.get("volumes", ""))

    def released(self, names: str) -> None:
        """Mark volumes `names` (comma-separated) available in the inventory."""
        for name in filter(None, names.split(",")):
            for kind in ("volume", "cdrom"):
                if self.ctx.inventory.get(kind, name) is not None:
                    self.record(name, "available", kind, attached_to="", target="")
