"""Storage pools: the `Pool` record and `cloud.pools` (create, get, list, delete) — `dir`
pools, a directory on the host that libvirt keeps volumes in."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

from nbcloud.core.errors import CloudError
from nbcloud.core.spec import PoolSpec, check_name
from nbcloud.providers.libvirt.images import IMAGE_POOL
from nbcloud.providers.libvirt.storage import PoolInfo
from nbcloud.services.instances import INSTANCE_POOL
from nbcloud.services.volumes import TIERS, tier_pool

if TYPE_CHECKING:
    from nbcloud.api import Cloud

#: nbcloud's own pools: `pool delete` leaves them alone.
OWN_POOLS = (INSTANCE_POOL, IMAGE_POOL) + tuple(tier_pool(t) for t in TIERS)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f}G" if n >= 2**30 else f"{n / 2**20:.1f}M"


class Pool:
    """What libvirt says about one pool (a snapshot: `cloud.pools.get` again to refresh)."""

    def __init__(self, info: PoolInfo):
        self.info = info
        self.name = info.name

    path = property(lambda self: self.info.path)
    capacity = property(lambda self: self.info.capacity)
    allocation = property(lambda self: self.info.allocation)
    available = property(lambda self: self.info.available)
    volumes = property(lambda self: self.info.volumes)

    def row(self) -> tuple[str, ...]:
        i = self.info
        return (i.name, i.path, "active" if i.active else "inactive", _size(i.capacity),
                _size(i.allocation), _size(i.available), str(i.volumes))

    def __repr__(self) -> str:
        i = self.info
        return (f"<Pool {i.name} path={i.path} capacity={_size(i.capacity)} "
                f"allocation={_size(i.allocation)} available={_size(i.available)} "
                f"volumes={i.volumes}>")

    def _repr_html_(self) -> str:
        cols = ("name", "path", "state", "capacity", "allocation", "available", "volumes")
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in zip(cols, self.row()))
        return f"<b>pool</b> {html.escape(self.name)}<table>{cells}</table>"


class Pools:
    """`cloud.pools`: dir storage pools."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud

    def get(self, name: str) -> Pool:
        check_name(name, "pool name")
        return Pool(self.cloud.backend.pool_info(name))

    __getitem__ = get

    def list(self) -> list[Pool]:
        return [Pool(i) for i in self.cloud.backend.pools_info()]

    def create(self, name: str, path: str, *, stack: str = "adhoc") -> Pool:
        """Create, start and autostart dir pool `name` at absolute `path` (made if need be)."""
        spec = PoolSpec(name, path)
        backend, inv, uri = self.cloud.backend, self.cloud.inventory, self.cloud.uri
        backend.check_new_pool(spec.name, spec.path)
        with inv.operation(uri, "create", "pool", name, path=spec.path):
            info = backend.create_pool(spec.name, spec.path)
            inv.put(uri, "pool", name, state="active", spec={"path": spec.path}, stack=stack)
        return Pool(info)

    def delete(self, name: str) -> None:
        """Stop and undefine pool `name`; refused for nbcloud's own pools and pools with
        volumes. The directory is left on disk."""
        check_name(name, "pool name")
        if name in OWN_POOLS:
            raise CloudError(f"pool {name!r} is one of nbcloud's own: it is not deleted")
        backend, inv, uri = self.cloud.backend, self.cloud.inventory, self.cloud.uri
        info = backend.pool_info(name)
        if not info.active:  # start it, so that its volumes are counted
            backend.pool(name)
            info = backend.pool_info(name)
        if info.volumes:
            raise CloudError(f"pool {name!r} holds {info.volumes} volume(s): delete them "
                             "first")
        with inv.operation(uri, "delete", "pool", name):
            backend.delete_pool(name)
            inv.remove(uri, "pool", name)

