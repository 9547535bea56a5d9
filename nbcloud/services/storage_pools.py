"""Storage pools: the `Pool` record and `cloud.pools` (create, get, list, delete) — `dir`
pools, a directory on the host that libvirt keeps volumes in. A provider capability
("storage-pools"): a cloud places its volumes itself."""
from __future__ import annotations

import html

from nbcloud.context import Context
from nbcloud.core.errors import CloudError
from nbcloud.core.spec import PoolSpec, check_name
from nbcloud.providers.types import PoolInfo


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

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider

    def get(self, name: str) -> Pool:
        check_name(name, "pool name")
        self.provider.require("storage-pools")
        return Pool(self.provider.pool_info(name))

    __getitem__ = get

    def list(self) -> list[Pool]:
        self.provider.require("storage-pools")
        return [Pool(i) for i in self.provider.pools_info()]

    def create(self, name: str, path: str, *, stack: str = "adhoc") -> Pool:
        """Create, start and autostart dir pool `name` at absolute `path` (made if need be)."""
        spec = PoolSpec(name, path)
        provider, inv = self.provider, self.ctx.inventory
        provider.require("storage-pools")
        provider.check_new_pool(spec.name, spec.path)
        with inv.operation("create", "pool", name, path=spec.path):
            info = provider.create_pool(spec.name, spec.path)
            inv.put("pool", name, state="active", spec={"path": spec.path}, stack=stack)
        return Pool(info)

    def delete(self, name: str) -> None:
        """Stop and undefine pool `name`; refused for nbcloud's own pools and pools with
        volumes. The directory is left on disk."""
        check_name(name, "pool name")
        provider, inv = self.provider, self.ctx.inventory
        provider.require("storage-pools")
        if name in provider.own_pools():
            raise CloudError(f"pool {name!r} is one of nbcloud's own: it is not deleted")
        info = provider.pool_info(name)
        if not info.active:  # start it, so that its volumes are counted
            provider.pool(name)
            info = provider.pool_info(name)
        if info.volumes:
            raise CloudError(f"pool {name!r} holds {info.volumes} volume(s): delete them "
                             "first")
        with inv.operation("delete", "pool", name):
            provider.delete_pool(name)
            inv.remove("pool", name)
