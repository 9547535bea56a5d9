"""Volumes on OpenStack: Cinder volumes carrying nbcloud's mark (metadata `nbcloud:kind`).

A tier is a volume type of that name (`ssd`, `hdd`; the cloud's operator gives them QoS
specs), or the cloud's default type where it has none of that name. Cinder counts in
whole GiB: a size below a GiB is rounded up, and `size` reports what Cinder made.
Attach and detach are Nova volume attachments; the guest sees the volume as the next
virtio disk, and its serial is the volume's ID.
"""
from __future__ import annotations

import time

from nbcloud.core.errors import CloudError, NotFound, Unsupported
from nbcloud.core.spec import check_name
from nbcloud.providers.types import DataVolume

GIB = 1 << 30
WAIT = 300.0


class VolumeMixin:
    """The volume operations of `OpenStackProvider` (providers/base.py, BlockStorage)."""

    volume_granularity = GIB   # Cinder counts in whole GiB

    def _volumes(self) -> list:
        return [v for v in self.conn.block_storage.volumes(details=True)
                if (v.metadata or {}).get("nbcloud:kind") == "volume"]

    def _as_data_volume(self, v) -> DataVolume:
        tier = (v.metadata or {}).get("nbcloud:tier", "")
        # Nova gives the disk the volume's ID as its serial; virtio keeps 20 characters
        return DataVolume(v.name, "disk", tier, v.volume_type or "", v.id, int(v.size) * GIB,
                          int(v.size) * GIB, serial=v.id[:20])

    def data_volumes(self) -> dict[str, DataVolume]:
        if "volumes" not in self.capabilities:
            return {}
        return {v.name: self._as_data_volume(v) for v in self._volumes()}

    def data_volume(self, name: str) -> DataVolume:
        check_name(name, "volume name")
        vol = self.data_volumes().get(name)
        if vol is None:
            raise NotFound(f"volume {name!r} does not exist (see `%cloud volume list`)")
        return vol

    def own_pools(self) -> tuple[str, ...]:
        return ()

    def start_pools(self, names: list[str]) -> list[str]:
        return []   # no storage pools: the cloud places volumes itself

    def check_volume_pool(self, pool: str) -> None:
        check_name(pool, "volume type")
        if not any(t.name == pool for t in self.conn.block_storage.types()):
            raise NotFound(f"volume type {pool!r} does not exist on {self.cloud} (a volume's "
                           "pool is its Cinder volume type here)")

    def _volume_type(self, tier: str, pool: str | None) -> str | None:
        names = {t.name for t in self.conn.block_storage.types()}
        if pool:
            return pool
        return tier if tier in names else None   # the cloud's default type

    def create_data_volume(self, name: str, capacity: int, tier: str,
                           pool: str | None = None) -> DataVolume:
        self.require("volumes")
        size = max(1, -(-capacity // GIB))
        try:
            v = self.conn.block_storage.create_volume(
                name=name, size=size, volume_type=self._volume_type(tier, pool),
                metadata={"nbcloud:kind": "volume", "nbcloud:tier": tier})
            v = self.conn.block_storage.wait_for_status(v, "available", failures=["error"],
                                                        interval=1, wait=WAIT)
        except Exception as exc:  # noqa: BLE001
            raise CloudError(f"Cinder refused volume {name!r}: "
                             f"{' '.join(str(exc).split())[:300]}") from None
        return self._as_data_volume(v)

    def store_iso(self, name: str, iso, pool: str | None = None) -> DataVolume:
        raise Unsupported(f"the openstack provider ({self.uri}) has no cdroms")

    def delete_data_volume(self, vol: DataVolume) -> None:
        self.conn.block_storage.delete_volume(vol.path, ignore_missing=True)
        deadline = time.monotonic() + WAIT
        while self._exists(vol.path):
            if time.monotonic() > deadline:
                raise CloudError(f"volume {vol.name!r} was not deleted within {WAIT:.0f} s")
            time.sleep(1)

    def _exists(self, volume_id: str) -> bool:
        try:
            self.conn.block_storage.get_volume(volume_id)
            return True
        except Exception:  # noqa: BLE001  (NotFound from the SDK)
            return False

    def volume_users(self, vol: DataVolume) -> list[tuple[str, str]]:
        v = self.conn.block_storage.get_volume(vol.path)
        servers = {s.id: s.name for s in self.conn.compute.servers(details=False)}
        return [(servers.get(a["server_id"], a["server_id"]),
                 (a.get("device") or "").rsplit("/", 1)[-1]) for a in v.attachments or []]

    def attach_volume(self, vol: DataVolume, instance: str, bus: str = "virtio") -> str:
        server = self._server(instance)
        att = self.conn.compute.create_volume_attachment(server, volume_id=vol.path)
        self._wait_volume(vol.path, "in-use")
        return (att.device or "").rsplit("/", 1)[-1]

    def detach_volume(self, instance: str, target: str) -> None:
        server = self._server(instance)
        for att in self.conn.compute.volume_attachments(server):
            if (att.device or "").rsplit("/", 1)[-1] == target:
                self.conn.compute.delete_volume_attachment(att, server)
                self._wait_volume(att.volume_id, "available")
                return
        raise CloudError(f"instance {instance!r} has no volume on {target}")

    def grow_volume(self, vol: DataVolume, capacity: int) -> bool:
        """Cinder's extend (live on an attached volume where the cloud allows it)."""
        size = max(1, -(-capacity // GIB))
        v = self.conn.block_storage.get_volume(vol.path)
        live = v.status == "in-use"
        self.conn.block_storage.extend_volume(v, size)
        deadline = time.monotonic() + WAIT
        while self.conn.block_storage.get_volume(vol.path).size < size:
            if time.monotonic() > deadline:
                raise CloudError(f"volume {vol.name!r} did not grow to {size} GiB")
            time.sleep(1)
        return live

    def _wait_volume(self, volume_id: str, status: str) -> None:
        v = self.conn.block_storage.get_volume(volume_id)
        self.conn.block_storage.wait_for_status(v, status, failures=["error"], interval=1,
                                                wait=WAIT)

