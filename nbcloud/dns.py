"""DNS records per network: `cloud.dns` (add, list, delete), served by the network's
dnsmasq.

Every instance already has an A record on each of its networks (networks.py). A record
added here is an inventory resource of kind "dns" named NAME.NETWORK, spec {"network",
"name", "type": "A" | "CNAME", "value": address or target name}, written into the
network's `<dns><host>` entries, which libvirt hands to the running dnsmasq without a
restart. A CNAME is served as an alias: the name joins its target's host entry, so
dnsmasq answers with the target's address. (A real CNAME answer needs dnsmasq's `cname=`
option, which libvirt only passes through `<dnsmasq:options>` at network start, and
restarting a network unplugs every running guest from its bridge.) Records follow their
target: each add, list or delete puts back names that a re-created instance's fresh
record dropped, and moves aliases to where their target now is.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .display import Table
from .errors import AlreadyExists, NotFound
from .spec import InvalidSpec, check_name

if TYPE_CHECKING:
    from .api import Cloud

KIND = "dns"


@dataclass(frozen=True)
class Record:
    network: str
    name: str
    type: str          # "A" or "CNAME"
    value: str         # the address (A) or the target name (CNAME)

    @property
    def key(self) -> str:
        return f"{self.name}.{self.network}"

    def __str__(self) -> str:
        return f"{self.name}.{self.network} {self.type} {self.value}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self))}</pre>"


def _ipv4(value: object) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise InvalidSpec(f"address {value!r} is not an IPv4 address: use the form "
                          "10.77.0.20") from None


class Dns:
    """`cloud.dns`: the records each network's dnsmasq serves."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud

    # ----- reading --------------------------------------------------------------------
    def records(self, network: str | None = None) -> list[Record]:
        """The records added with `add` (on `network`, or on all networks)."""
        out = []
        for r in self.cloud.inventory.resources(self.cloud.uri, KIND):
            s = r.spec
            if network is None or s["network"] == network:
                out.append(Record(s["network"], s["name"], s["type"], s["value"]))
        return out

    def _hosts(self, network: str) -> dict[str, str]:
        """name -> address of every name the network's DNS answers."""
        info = self.cloud.networks.get(network).info
        return {name: ip for ip, names in info.dns_hosts for name in names}

    def resolve(self, network: str, name: str) -> str:
        """The address the network's DNS gives `name`, or ''."""
        return self._hosts(network).get(name, "")

    def table(self, network: str) -> Table:
        """What `%cloud dns list NETWORK` shows: instance records and added ones."""
        self.refresh(network)
        mine = {r.name: r for r in self.records(network)}
        rows = []
        for name, ip in sorted(self._hosts(network).items()):
            r = mine.get(name)
            if r is None:
                rows.append((name, "A", ip, "instance"))
            elif r.type == "CNAME":
                rows.append((name, "CNAME", f"{r.value} ({ip})", "added"))
            else:
                rows.append((name, "A", ip, "added"))
        return Table(["name", "type", "value", "source"], rows, f"dns on {network}")

    # ----- writes ---------------------------------------------------------------------
    def add(self, network: str, name: str, ip: str | None = None, *,
            cname: str | None = None, stack: str = "adhoc") -> Record:
        """Add `name` on `network`: an A record to `ip`, or an alias of `cname` (a name
        the network's DNS already answers)."""
        check_name(name, "record name")
        if (ip is None) == (cname is None):
            raise InvalidSpec("dns add needs an address or --cname TARGET (one of them)")
        hosts = self._hosts(network)
        if name in hosts or any(r.name == name for r in self.records(network)):
            raise AlreadyExists(f"{name!r} is already a name on network {network!r}: "
                                "pick another or delete it first")
        if cname is not None:
            check_name(cname, "cname target")
            if cname not in hosts:
                raise InvalidSpec(f"cname target {cname!r} is not a name on network "
                                  f"{network!r}: see `%cloud dns list {network}`")
            record = Record(network, name, "CNAME", cname)
        else:
            record = Record(network, name, "A", _ipv4(ip))
        cloud = self.cloud
        with cloud.inventory.operation(cloud.uri, "add", KIND, record.key,
                                       type=record.type, value=record.value) as op:
            self._publish(record, self._hosts(network))
            cloud.inventory.put(cloud.uri, KIND, record.key, state="active", stack=stack,
                                spec={"network": network, "name": name,
                                      "type": record.type, "value": record.value})
            op.detail = str(record)
        return record

    def delete(self, network: str, name: str) -> None:
        check_name(name, "record name")
        record = next((r for r in self.records(network) if r.name == name), None)
        if record is None:
            raise NotFound(f"{name!r} is not a record added on network {network!r} "
                           "(instance records go with their instance)")
        cloud = self.cloud
        with cloud.inventory.operation(cloud.uri, "delete", KIND, record.key):
            self._unpublish(network, name)
            cloud.inventory.remove(cloud.uri, KIND, record.key)

    def refresh(self, network: str) -> list[str]:
        """Put back records a re-created instance's record dropped, and move aliases to
        their target's current address; returns what changed."""
        changed = []
        for record in self.records(network):
            hosts = self._hosts(network)
            want = record.value if record.type == "A" else hosts.get(record.value, "")
            if want and hosts.get(record.name) != want:
                self._unpublish(network, record.name)
                self._publish(record, self._hosts(network))
                changed.append(f"{record.name} -> {want}")
        return changed

    # ----- the network's host entries -------------------------------------------------
    def _names_at(self, network: str, ip: str) -> tuple[str, ...]:
        info = self.cloud.networks.get(network).info
        return tuple(n for h_ip, names in info.dns_hosts if h_ip == ip for n in names)

    def _publish(self, record: Record, hosts: dict[str, str]) -> None:
        ip = record.value if record.type == "A" else hosts[record.value]
        names = self._names_at(record.network, ip)
        self.cloud.backend.set_dns_names(record.network, ip, names + (record.name,))

    def _unpublish(self, network: str, name: str) -> None:
        info = self.cloud.networks.get(network).info
        for ip, names in info.dns_hosts:
            if name in names:
                self.cloud.backend.set_dns_names(network, ip,
                                                 tuple(n for n in names if n != name))
