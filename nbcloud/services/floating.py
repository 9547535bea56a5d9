"""Floating addresses (port forwards): a host address and port mapped to an instance's
port, `cloud.floating` (create, list, delete, restore).

The provider makes the mapping (on libvirt: nftables DNAT on the host, see
providers/libvirt/forwards.py). The inventory records each forward as kind "floating",
spec {"instance", "port", "host_port", "host_address", "guest_ip", "proto"}; `restore`
puts back what a host restart lost.
"""
from __future__ import annotations

import ipaddress
import socket

from nbcloud.context import Context
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotFound
from nbcloud.core.events import INSTANCE_DELETED
from nbcloud.core.spec import check_name, check_port
from nbcloud.providers.types import Forward

KIND = "floating"
HOST_PORTS = range(20000, 30000)       # where a host port is picked when none is given
PROTOCOLS = ("tcp", "udp")


def check_host_address(value: str | None) -> str:
    """'' (any address of the host) or an IPv4 address this host has."""
    if not value:
        return ""
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise InvalidSpec(f"host address {value!r} is not an IPv4 address: use one of "
                          "this host's addresses, like 127.0.0.1") from None
    with socket.socket() as s:
        try:
            s.bind((str(addr), 0))
        except OSError:
            raise InvalidSpec(f"host address {value} is not an address of this host "
                              "(network namespace): use one it has, like 127.0.0.1") \
                from None
    return str(addr)


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

    def restore(self) -> list[str]:
        """Put back the rules of recorded forwards that nft no longer has (the host or its
        network namespace restarted: nft rules do not persist); returns their names."""
        live = self.live()
        missing = [f for f in self.list() if f.name not in live]
        if missing:
            self.provider.add_forwards(missing)
        return [f.name for f in missing]

    def get(self, name: str) -> Forward:
        for f in self.list():
            if f.name == name:
                return f
        raise NotFound(f"port forward {name!r} does not exist (`%cloud floating list`)")

    def _free_port(self, taken: set[int], address: str) -> int:
        for port in HOST_PORTS:
            if port in taken:
                continue
            with socket.socket() as s:
                try:
                    s.bind((address or "0.0.0.0", port))
                except OSError:
                    continue
            return port
        raise CloudError(f"no free host port in {HOST_PORTS.start}-{HOST_PORTS.stop - 1}")

    def create(self, instance: str, port: object, *, host_port: object = None,
               host_address: str | None = None, proto: str = "tcp") -> Forward:
        """Forward host_address:host_port (any host address and a free port from
        20000-29999 when not given) to `instance`'s `port`."""
        check_name(instance, "instance name")
        self.provider.require("floating")
        port = check_port(port)
        if proto not in PROTOCOLS:
            raise InvalidSpec(f"protocol {proto!r} is not allowed: use tcp or udp")
        address = check_host_address(host_address)
        existing = self.list()
        taken = {f.host_port for f in existing if f.proto == proto}
        if host_port is None:
            hport = self._free_port(taken, address)
        else:
            hport = check_port(host_port, "host port")
            if hport in taken:
                raise AlreadyExists(f"host port {hport} is forwarded already "
                                    "(`%cloud floating list`)")
        meta = self.provider.metadata(instance)  # NotFound / NotManaged
        guest_ip = meta.get("ip", "")
        if not guest_ip:
            raise CloudError(f"instance {instance!r} has no address to forward to")
        name = f"{instance}-{hport}"
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
        return self.provider.live_forwards()
