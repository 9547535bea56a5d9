"""Floating addresses (port forwards): a host address and port mapped to an instance's
port, `cloud.floating` (create, list, delete, restore).

The provider makes the mapping (on libvirt: nftables DNAT on the host, see
providers/libvirt/forwards.py). The inventory records each forward as kind "floating",
spec {"instance", "port", "host_port", "host_address", "guest_ip", "proto"}; `restore`
puts back what a host restart lost.
"""
from __future__ import annotations

from nbcloud.context import Context
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotFound
from nbcloud.core.events import INSTANCE_DELETED
from nbcloud.core.spec import check_name, check_port
from nbcloud.providers.types import Forward

KIND = "floating"
PROTOCOLS = ("tcp", "udp")


def forward_name(instance: str, host_port: int, proto: str) -> str:
    """INSTANCE-PORT for tcp, INSTANCE-PORT-udp for udp: one name per forward."""
    return f"{instance}-{host_port}" + ("-udp" if proto == "udp" else "")


class FloatingAddresses:
    """`cloud.floating`: create, list and delete port forwards."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider
        ctx.events.on(INSTANCE_DELETED, lambda name, meta: self.instance_deleted(name))

    def list(self) -> list[Forward]:
        return [Forward(r.name, r.spec["instance"], r.spec["port"], r.spec["host_port"],
                        r.spec.get("host_address", ""), r.spec.get("guest_ip", ""),
                        r.spec.get("proto", "tcp"))
                for r in self.ctx.inventory.all(KIND)]

    def table(self) -> Table:
        live = self.live()
        return Table(["name", "host", "instance", "guest", "proto", "rules"],
                     [(f.name, f.endpoint, f.instance, f"{f.guest_ip}:{f.port}", f.proto,
                       "in place" if f.name in live else "missing: `floating restore`")
                      for f in self.list()], "port forwards")

    def restore(self, names: set[str] | None = None) -> list[str]:
        """Put back the rules of recorded forwards (of `names`, or all) the provider no
        longer has (on libvirt, nft rules do not outlive the host or its network
        namespace); returns their names."""
        mine = [f for f in self.list() if names is None or f.name in names]
        if not mine:
            return []
        live = self.live()
        missing = [f for f in mine if f.name not in live]
        if missing:
            self.provider.add_forwards(missing)
        return [f.name for f in missing]

    def get(self, name: str) -> Forward:
        for f in self.list():
            if f.name == name:
                return f
        raise NotFound(f"port forward {name!r} does not exist (`%cloud floating list`)")

    def create(self, instance: str, port: object, *, host_port: object = None,
               host_address: str | None = None, proto: str = "tcp") -> Forward:
        """Forward host_address:host_port to `instance`'s `port`; the provider picks what is
        not given (on libvirt: any host address and a free port from 20000-29999) and
        refuses what would take the host's own (on libvirt: ports below 1024, ports a host
        service holds)."""
        check_name(instance, "instance name")
        self.provider.require("floating")
        port = check_port(port)
        if proto not in PROTOCOLS:
            raise InvalidSpec(f"protocol {proto!r} is not allowed: use tcp or udp")
        hport = None if host_port is None else check_port(host_port, "host port")
        taken = {f.host_port for f in self.list() if f.proto == proto}
        if hport in taken:
            raise AlreadyExists(f"host port {hport} is forwarded already "
                                "(`%cloud floating list`)")
        address, hport = self.provider.forward_address(instance, port, hport, host_address,
                                                       taken, proto)
        meta = self.provider.metadata(instance)  # NotFound / NotManaged
        guest_ip = meta.get("ip", "")
        if not guest_ip:
            raise CloudError(f"instance {instance!r} has no address to forward to")
        name = forward_name(instance, hport, proto)
        fwd = Forward(name, instance, port, hport, address, guest_ip, proto)
        with self.ctx.inventory.operation("create", KIND, name, **fwd.spec()):
            self.provider.add_forwards([fwd])
            self.ctx.inventory.put(KIND, name, state="active",
                                     spec=fwd.spec(), stack=meta.get("stack", "adhoc"))
        return fwd

    def delete(self, name: str) -> None:
        fwd = self.get(name)
        with self.ctx.inventory.operation("delete", KIND, name):
            self.provider.remove_forwards({fwd.name})
            self.ctx.inventory.remove(KIND, name)

    def instance_deleted(self, instance: str) -> list[str]:
        """Remove the forwards of deleted instance `instance`; returns their names."""
        gone = [f.name for f in self.list() if f.instance == instance]
        if gone:
            self.provider.remove_forwards(set(gone))
            for name in gone:
                self.ctx.inventory.remove(KIND, name)
        return gone

    def live(self) -> dict[str, list[str]]:
        """forward name -> where its rules are, as the provider has them now."""
        return self.provider.live_forwards(self.list())
