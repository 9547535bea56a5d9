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

A failover record (`--failover IP,IP... --port P`) points at the first of its addresses
that accepts a TCP connection on port P; a checker thread probes them every second and
re-points the name when that changes (each change in the operations log). Where the host
agent serves the URI (nbcloud/agent/), the agent's checker is the only one. Its addresses
must be in the network's range: the probes only ever go to the network's own guests.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass

from nbcloud.context import Context
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, NotFound
from nbcloud.core.spec import InvalidSpec, check_name, check_port

KIND = "dns"


@dataclass(frozen=True)
class Record:
    network: str
    name: str
    type: str          # "A", "CNAME" or "FAILOVER"
    value: str         # the address (A), the target name (CNAME), addresses (FAILOVER)
    port: int = 0      # FAILOVER: the port probed
    current: str = ""  # FAILOVER: the address the name points at now

    @property
    def key(self) -> str:
        return f"{self.name}.{self.network}"

    def __str__(self) -> str:
        extra = f" port {self.port} -> {self.current or 'none healthy'}" \
            if self.type == "FAILOVER" else ""
        return f"{self.name}.{self.network} {self.type} {self.value}{extra}"

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


def on_network(ip: str, cidr: ipaddress.IPv4Network, network: str) -> str:
    """`ip` if it is a host address of `cidr` (a guest's, or the gateway where balancers
    listen): a record never sends the network's guests elsewhere."""
    addr = ipaddress.IPv4Address(ip)
    if addr not in cidr or addr in (cidr.network_address, cidr.broadcast_address):
        raise InvalidSpec(f"{ip} is not an address on network {network!r} ({cidr}): a "
                          "record points at the network's own guests or its gateway")
    return ip


class Dns:
    """`cloud.dns`: the records each network's dnsmasq serves."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider
        self._checker: threading.Thread | None = None
        self._stop = threading.Event()
        self.interval = 1.0

    # ----- reading --------------------------------------------------------------------
    def records(self, network: str | None = None) -> list[Record]:
        """The records added with `add` (on `network`, or on all networks)."""
        out = []
        for r in self.ctx.inventory.all(KIND):
            s = r.spec
            if network is None or s["network"] == network:
                out.append(Record(s["network"], s["name"], s["type"], s["value"],
                                  s.get("port", 0), s.get("current", "")))
        return out

    def _hosts(self, network: str) -> dict[str, str]:
        """name -> address of every name the network's DNS answers."""
        info = self.provider.network(network)
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
            elif r.type == "FAILOVER":
                rows.append((name, "A", ip, f"failover over {r.value} port {r.port}"))
            else:
                rows.append((name, "A", ip, "added"))
        hosts = self._hosts(network)
        rows += [(r.name, r.type, r.value, "added, no healthy address now")
                 for r in mine.values() if r.name not in hosts]
        return Table(["name", "type", "value", "source"], rows, f"dns on {network}")

    # ----- writes ---------------------------------------------------------------------
    def add(self, network: str, name: str, ip: str | None = None, *,
            cname: str | None = None, failover: str | list[str] | None = None,
            port: int = 80, stack: str = "adhoc") -> Record:
        """Add `name` on `network`: an A record to `ip`, an alias of `cname` (a name the
        network's DNS already answers), or a failover record over the addresses
        `failover` (the first that accepts TCP on `port`)."""
        check_name(name, "record name")
        if sum(x is not None for x in (ip, cname, failover)) != 1:
            raise InvalidSpec("dns add needs an address, --cname TARGET or --failover "
                              "IP,IP... (one of them)")
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
        elif failover is not None:
            record = self._failover_record(network, name, failover, port)
        else:
            record = Record(network, name, "A", on_network(
                _ipv4(ip), self.provider.network(network).network, network))
        ctx = self.ctx

        def claim(current) -> dict:    # one transaction: two adds of one name, one wins
            if current is not None:
                raise AlreadyExists(f"{name!r} is already a name on network {network!r}: "
                                    "pick another or delete it first")
            return {"network": network, "name": name, "type": record.type,
                    "value": record.value, "port": record.port, "current": record.current}
        with ctx.inventory.operation("add", KIND, record.key,
                                     type=record.type, value=record.value) as op:
            ctx.inventory.update(KIND, record.key, claim, state="active", stack=stack)
            try:
                self._publish(record, self._hosts(network))
            except BaseException:
                ctx.inventory.remove(KIND, record.key)
                raise
            op.detail = str(record)
        if record.type == "FAILOVER":
            self.start_checker()
        return record

    def delete(self, network: str, name: str) -> None:
        check_name(name, "record name")
        record = next((r for r in self.records(network) if r.name == name), None)
        if record is None:
            raise NotFound(f"{name!r} is not a record added on network {network!r} "
                           "(instance records go with their instance)")
        ctx = self.ctx
        with ctx.inventory.operation("delete", KIND, record.key):
            self._unpublish(network, name)
            ctx.inventory.remove(KIND, record.key)

    def refresh(self, network: str) -> list[str]:
        """Put back records a re-created instance's record dropped, and move aliases to
        their target's current address; returns what changed."""
        changed = []
        for record in self.records(network):
            hosts = self._hosts(network)
            want = self._address(record, hosts)
            if want and hosts.get(record.name) != want:
                self._unpublish(network, record.name)
                self._publish(record, self._hosts(network))
                changed.append(f"{record.name} -> {want}")
        return changed

    # ----- the network's host entries -------------------------------------------------
    def _names_at(self, network: str, ip: str) -> tuple[str, ...]:
        info = self.provider.network(network)
        return tuple(n for h_ip, names in info.dns_hosts if h_ip == ip for n in names)

    @staticmethod
    def _address(record: Record, hosts: dict[str, str]) -> str:
        if record.type == "A":
            return record.value
        if record.type == "FAILOVER":
            return record.current
        return hosts.get(record.value, "")

    def _publish(self, record: Record, hosts: dict[str, str]) -> None:
        ip = self._address(record, hosts)
        if not ip:
            return   # a failover record with no healthy address: no answer at all
        names = self._names_at(record.network, ip)
        self.provider.set_dns_names(record.network, ip, names + (record.name,))

    def _unpublish(self, network: str, name: str) -> None:
        info = self.provider.network(network)
        for ip, names in info.dns_hosts:
            if name in names:
                self.provider.set_dns_names(network, ip,
                                                 tuple(n for n in names if n != name))

    # ----- failover records -------------------------------------------------------------
    def _failover_record(self, network: str, name: str, addresses, port: object) -> Record:
        words = addresses.split(",") if isinstance(addresses, str) else list(addresses)
        ips = [_ipv4(w.strip()) for w in words if str(w).strip()]
        if len(ips) < 2:
            raise InvalidSpec("--failover needs at least two addresses, like "
                              "10.77.0.10,10.77.0.11")
        cidr = self.provider.network(network).network
        for ip in ips:
            on_network(ip, cidr, network)
        port = check_port(port)
        record = Record(network, name, "FAILOVER", ",".join(ips), port)
        return Record(network, name, "FAILOVER", record.value, port, self._healthy(record))

    @staticmethod
    def _healthy(record: Record, timeout: float = 0.5) -> str:
        """The first address of `record` that accepts a TCP connection, or ''."""
        for ip in record.value.split(","):
            try:
                with socket.create_connection((ip, record.port), timeout=timeout):
                    return ip
            except OSError:
                continue
        return ""

    def check_failover(self) -> list[str]:
        """Probe every failover record once; re-point those whose first healthy address
        changed. Returns what changed."""
        changed = []
        for record in self.records():
            if record.type != "FAILOVER":
                continue
            healthy = self._healthy(record)
            if healthy == record.current:
                continue
            ctx = self.ctx
            with ctx.inventory.operation("failover", KIND, record.key,
                                           was=record.current, now=healthy) as op:
                self._unpublish(record.network, record.name)
                moved = Record(record.network, record.name, record.type, record.value,
                               record.port, healthy)
                self._publish(moved, {})
                ctx.inventory.update(KIND, record.key,
                                     lambda r: {**r.spec, "current": healthy} if r else None)
                op.detail = f"{record.name} -> {healthy or 'none healthy'}"
            changed.append(op.detail)
        return changed

    def start_checker(self) -> None:
        """Probe failover records every `interval` s on a thread (while there are any;
        real hosts only: the test driver's addresses lead nowhere)."""
        if self.ctx.uri.startswith("test:") or self.ctx.inventory.agent_serves() or \
                (self._checker is not None and self._checker.is_alive()):
            return
        self._stop.clear()
        self._checker = threading.Thread(target=self._run_checker, daemon=True,
                                         name="nbcloud-dns-failover")
        self._checker.start()

    def stop_checker(self) -> None:
        self._stop.set()
        if self._checker is not None and self._checker is not threading.current_thread():
            self._checker.join(5)
        self._checker = None

    def _run_checker(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not any(r.type == "FAILOVER" for r in self.records()) or \
                        self.ctx.inventory.agent_serves():
                    return
                self.check_failover()
            except Exception:  # noqa: BLE001  (the operations log has a failed one)
                continue
