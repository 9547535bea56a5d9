"""Networks: the `Network` handle and `cloud.networks` (create, get, list, leases, delete).

A network is the provider's (on libvirt: a network with its own bridge and dnsmasq, DHCP
over the upper half of its CIDR, per-instance reservations in the lower half, and a DNS
record per instance, so that neighbours reach each other by name, `web-1` or
`web-1.NETWORK`). This service validates, refuses overlaps, keeps the inventory and logs.
"""
from __future__ import annotations

import ipaddress
import time

from nbcloud.context import Context
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotManaged
from nbcloud.core.handle import Handle
from nbcloud.core.spec import NetworkSpec, check_name
from nbcloud.providers.types import USER_NETWORK, HostRoute, NetworkInfo


def overlapping(cidr: ipaddress.IPv4Network,
                infos: list[NetworkInfo]) -> NetworkInfo | None:
    """The first existing network whose subnet overlaps `cidr`, if any. A cloud's
    external network is outside nbcloud's plan (its router refuses an overlap itself)."""
    for info in infos:
        if info.mode != "external" and info.network.overlaps(cidr):
            return info
    return None


def host_conflict(cidr: ipaddress.IPv4Network,
                  routes: list[HostRoute]) -> HostRoute | None:
    """The first range the host uses itself (a route, an address, a gateway) that
    `cidr` overlaps, if any."""
    for route in routes:
        if route.network.overlaps(cidr):
            return route
    return None


class Network(Handle):
    """A handle on one network; properties read live state from the provider."""

    noun = "network"

    @property
    def info(self) -> NetworkInfo:
        return self.service.provider.network(self.name)

    @property
    def cidr(self) -> str:
        return str(self.info.network)

    @property
    def mode(self) -> str:
        return self.info.mode

    @property
    def bridge(self) -> str:
        return self.info.bridge

    @property
    def gateway(self) -> str:
        return self.info.gateway

    @property
    def active(self) -> bool:
        return self.service.provider.network_active(self.name)

    @property
    def instances(self) -> list[str]:
        """Names of the nbcloud instances with a NIC on this network."""
        return self.service.attached(self.name)

    def leases(self) -> Table:
        return self.service.leases(self.name)

    def delete(self, force: bool = False) -> None:
        self.service.delete(self.name, force=force)

    def rows(self) -> dict[str, object]:
        info = self.info
        return {"mode": info.mode, "cidr": str(info.network), "gateway": info.gateway,
                "dhcp": f"{info.dhcp_start} - {info.dhcp_end}", "bridge": info.bridge,
                "dns domain": info.name,
                "state": "active" if self.active else "inactive",
                "instances": ", ".join(self.instances) or "-"}

    def summary(self, rows: dict[str, object]) -> str:
        return f"{rows['mode']} {rows['cidr']} bridge={rows['bridge']} gateway={rows['gateway']}"


class Networks:
    """`cloud.networks`: create, get, list, leases and delete networks."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider

    def get(self, name: str) -> Network:
        check_name(name, "network name")
        self.provider.network(name)  # NotFound with a clear message
        return Network(self, name)

    __getitem__ = get

    def list(self) -> list[Network]:
        """Every network on the host with an IPv4 address (nbcloud's and others')."""
        return [Network(self, info.name) for info in self.provider.network_infos()]

    def table(self) -> Table:
        """What `%cloud network list` shows."""
        provider, rows = self.provider, []
        users = self._users()
        for info in provider.network_infos():
            rows.append((info.name, info.mode, str(info.network), info.bridge,
                         "active" if provider.network_active(info.name) else "inactive",
                         ", ".join(users.get(info.name, [])) or "-",
                         "yes" if provider.network_managed(info) else "no"))
        return Table(["network", "mode", "cidr", "bridge", "state", "instances", "nbcloud"],
                     rows, "networks")

    def _users(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, meta in sorted(self.provider.managed().items()):
            for net in filter(None, meta.get("networks", "").split(",")):
                out.setdefault(net, []).append(name)
        return out

    def attached(self, name: str) -> list[str]:
        """Names of nbcloud instances with a NIC on network `name`."""
        return self._users().get(name, [])

    def create(self, name: str, cidr: str, mode: str = "nat", *,
               stack: str = "adhoc") -> Network:
        """Create network `name` over `cidr` (modes nat, isolated, routed, open).

        Refused, with nothing changed, if the name exists or the CIDR overlaps any
        network on the host, or a route, address or gateway of the host itself."""
        spec = NetworkSpec(name, cidr, mode)
        provider, inv = self.provider, self.ctx.inventory
        provider.require("networks")
        if name == USER_NETWORK:
            raise InvalidSpec("network name 'user' is reserved for user-mode networking "
                              "(no bridge; SSH through a loopback port): pick another name")
        if name in provider.network_names():
            raise AlreadyExists(f"network {name!r} exists already: pick another name or "
                                "delete it first")
        other = overlapping(spec.network, provider.network_infos())
        if other is not None:
            raise CloudError(f"cidr {spec.cidr} overlaps network {other.name!r} "
                             f"({other.network}): pick a range that does not")
        mine = host_conflict(spec.network, provider.host_routes())
        if mine is not None:
            raise CloudError(f"cidr {spec.cidr} overlaps {mine.network}, {mine.what}: a "
                             "network there would take addresses the host uses itself; "
                             "pick a range that does not")
        bridge = provider.new_bridge(name)   # in the intent, so that resume can finish it
        with inv.operation("create", "network", name, cidr=spec.cidr, mode=spec.mode,
                           bridge=bridge, stack=stack) as op:
            provider.create_network(name, spec.cidr, spec.mode, bridge)
            try:
                inv.put("network", name, state="active", stack=stack,
                        spec={"cidr": spec.cidr, "mode": spec.mode, "bridge": bridge})
            except BaseException:
                provider.delete_network(name)
                raise
            op.detail = bridge
        return Network(self, name)

    def start(self, name: str) -> bool:
        """Start network `name` if it is defined but not running (after a host restart,
        libvirt autostarts networks only once per boot); True if it had to."""
        if self.provider.network_active(self.get(name).name):
            return False
        with self.ctx.inventory.operation("start", "network", name):
            self.provider.start_network(name)
        return True

    def leases(self, name: str) -> Table:
        """Reservations and DHCP leases of network `name`: MAC, IP, hostname, expiry."""
        info = self.get(name).info
        leases = {lease["mac"].lower(): lease for lease in self.provider.leases(name)}
        rows = []
        for mac, ip, host in info.hosts:
            lease = leases.pop(mac.lower(), None)
            rows.append((mac, ip, host, "yes", _expiry(lease)))
        for lease in sorted(leases.values(), key=lambda x: x["ipaddr"]):
            rows.append((lease["mac"], lease["ipaddr"], lease.get("hostname") or "", "no",
                         _expiry(lease)))
        return Table(["mac", "ip", "hostname", "reserved", "lease expires"], rows,
                     f"leases on {name}")

    def delete(self, name: str, *, force: bool = False) -> None:
        """Delete network `name`; refused while instances are attached, for networks
        nbcloud did not make, and for the default network unless `force`."""
        provider, inv = self.provider, self.ctx.inventory
        info = self.get(name).info
        record = inv.get("network", name)
        adopted = record is not None and record.spec.get("adopted")
        if not provider.network_managed(info) and not adopted:
            raise NotManaged(f"network {name!r} was not made by nbcloud: nbcloud leaves "
                             "it alone (`%cloud adopt` it first to manage it)")
        if name == provider.default_network and not force:
            raise CloudError(f"network {name!r} is nbcloud's default network: instances "
                             "use it unless told otherwise (pass force to delete it anyway)")
        users = self.attached(name)
        if users:
            raise CloudError(f"network {name!r} is in use by instance"
                             f"{'s' if len(users) > 1 else ''} {', '.join(users)}: "
                             "delete them first")
        with inv.operation("delete", "network", name, force=force):
            provider.delete_network(name)
            inv.remove("network", name)


def _expiry(lease: dict | None) -> str:
    if not lease:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease["expirytime"]))
