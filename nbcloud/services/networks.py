"""Networks: the `Network` handle and `cloud.networks` (create, get, list, leases, delete).

A network is a libvirt network with its own bridge and dnsmasq: DHCP over the upper half
of its CIDR, per-instance reservations in the lower half, and a DNS record per instance,
so that neighbours reach each other by name (`web-1` or `web-1.NETWORK`).
"""
from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING

from nbcloud.core.display import Table, card
from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotManaged
from nbcloud.core.spec import NetworkSpec, check_name
from nbcloud.providers.libvirt import xml as lx

if TYPE_CHECKING:
    from nbcloud.api import Cloud

DEFAULT_NETWORK = "nbcloud"
DEFAULT_BRIDGE = "virbr-nbcloud"
BRIDGE_PREFIX = "nbc-"
BRIDGE_MAX = 15  # IFNAMSIZ - 1: the kernel refuses longer interface names


def bridge_name(name: str, taken: set[str]) -> str:
    """A bridge name for network `name`: at most 15 characters, not in `taken`."""
    candidates = [f"{BRIDGE_PREFIX}{name[:10]}"]
    candidates += [f"{BRIDGE_PREFIX}{name[:7]}-{i:02d}" for i in range(1, 100)]
    for candidate in candidates:
        if candidate not in taken:
            assert len(candidate) <= BRIDGE_MAX
            return candidate
    raise CloudError(f"no free bridge name for network {name!r}: rename the network")


def overlapping(cidr: ipaddress.IPv4Network,
                infos: list[lx.NetworkInfo]) -> lx.NetworkInfo | None:
    """The first existing network whose subnet overlaps `cidr`, if any."""
    for info in infos:
        if info.network.overlaps(cidr):
            return info
    return None


def is_managed(info: lx.NetworkInfo) -> bool:
    """Whether nbcloud made this network (its default one, or a bridge named by us)."""
    return info.name == DEFAULT_NETWORK or info.bridge.startswith(BRIDGE_PREFIX)


class Network:
    """A handle on one network; properties read live state from libvirt."""

    def __init__(self, cloud: Cloud, name: str):
        self.cloud = cloud
        self.name = name

    @property
    def info(self) -> lx.NetworkInfo:
        return self.cloud.backend.network(self.name)

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
        return self.cloud.backend.network_active(self.name)

    @property
    def instances(self) -> list[str]:
        """Names of the nbcloud instances with a NIC on this network."""
        return self.cloud.networks.attached(self.name)

    def leases(self) -> Table:
        return self.cloud.networks.leases(self.name)

    def delete(self, force: bool = False) -> None:
        self.cloud.networks.delete(self.name, force=force)

    def _rows(self) -> dict[str, str]:
        info = self.info
        return {"mode": info.mode, "cidr": str(info.network), "gateway": info.gateway,
                "dhcp": f"{info.dhcp_start} - {info.dhcp_end}", "bridge": info.bridge,
                "dns domain": info.name,
                "state": "active" if self.active else "inactive",
                "instances": ", ".join(self.instances) or "-"}

    def __repr__(self) -> str:
        try:
            info = self.info
        except CloudError:
            return f"<Network {self.name} (gone)>"
        return (f"<Network {self.name} {info.mode} {info.network} bridge={info.bridge} "
                f"gateway={info.gateway}>")

    def _repr_html_(self) -> str:
        try:
            rows = self._rows()
        except CloudError:
            return card("network", self.name, None)
        return card("network", self.name, rows)


class Networks:
    """`cloud.networks`: create, get, list, leases and delete networks."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud

    def get(self, name: str) -> Network:
        check_name(name, "network name")
        self.cloud.backend.network(name)  # NotFound with a clear message
        return Network(self.cloud, name)

    __getitem__ = get

    def list(self) -> list[Network]:
        """Every network on the host with an IPv4 address (nbcloud's and others')."""
        return [Network(self.cloud, info.name) for info in self.cloud.backend.network_infos()]

    def table(self) -> Table:
        """What `%cloud network list` shows."""
        backend, rows = self.cloud.backend, []
        users = self._users()
        for info in backend.network_infos():
            rows.append((info.name, info.mode, str(info.network), info.bridge,
                         "active" if backend.network_active(info.name) else "inactive",
                         ", ".join(users.get(info.name, [])) or "-",
                         "yes" if is_managed(info) else "no"))
        return Table(["network", "mode", "cidr", "bridge", "state", "instances", "nbcloud"],
                     rows, "networks")

    def _users(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, meta in sorted(self.cloud.backend.managed().items()):
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
        network on the host."""
        spec = NetworkSpec(name, cidr, mode)
        cloud, backend = self.cloud, self.cloud.backend
        if name == "user":
            raise InvalidSpec("network name 'user' is reserved for user-mode networking "
                              "(no bridge; SSH through a loopback port): pick another name")
        if name in backend.network_names():
            raise AlreadyExists(f"network {name!r} exists already: pick another name or "
                                "delete it first")
        other = overlapping(spec.network, backend.network_infos())
        if other is not None:
            raise CloudError(f"cidr {spec.cidr} overlaps network {other.name!r} "
                             f"({other.network}): pick a range that does not")
        bridge = bridge_name(name, backend.network_bridges())
        with cloud.inventory.operation(cloud.uri, "create", "network", name,
                                       cidr=spec.cidr, mode=spec.mode, bridge=bridge,
                                       stack=stack) as op:
            backend.create_network(name, spec.cidr, spec.mode, bridge)
            try:
                cloud.inventory.put(cloud.uri, "network", name, state="active", stack=stack,
                                    spec={"cidr": spec.cidr, "mode": spec.mode,
                                          "bridge": bridge})
            except BaseException:
                backend.delete_network(name)
                raise
            op.detail = bridge
        return Network(cloud, name)

    def leases(self, name: str) -> Table:
        """Reservations and DHCP leases of network `name`: MAC, IP, hostname, expiry."""
        info = self.get(name).info
        leases = {lease["mac"].lower(): lease for lease in self.cloud.backend.leases(name)}
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
        cloud, backend = self.cloud, self.cloud.backend
        info = self.get(name).info
        adopted = any(r.name == name and r.spec.get("adopted")
                      for r in cloud.inventory.resources(cloud.uri, "network"))
        if not is_managed(info) and not adopted:
            raise NotManaged(f"network {name!r} was not made by nbcloud: nbcloud leaves "
                             "it alone (`%cloud adopt` it first to manage it)")
        if name == DEFAULT_NETWORK and not force:
            raise CloudError(f"network {name!r} is nbcloud's default network: instances "
                             "use it unless told otherwise (pass force to delete it anyway)")
        users = self.attached(name)
        if users:
            raise CloudError(f"network {name!r} is in use by instance"
                             f"{'s' if len(users) > 1 else ''} {', '.join(users)}: "
                             "delete them first")
        with cloud.inventory.operation(cloud.uri, "delete", "network", name, force=force):
            backend.delete_network(name)
            cloud.inventory.remove(cloud.uri, "network", name)


def _expiry(lease: dict | None) -> str:
    if not lease:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease["expirytime"]))
