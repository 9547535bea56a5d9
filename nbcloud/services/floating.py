"""Floating addresses (port forwards): a host address and port mapped to an instance's port
by nftables DNAT on the host.

nbcloud keeps its rules in a table of its own, `ip nbcloud`, made on first use: chain
`prerouting` (DNAT for clients elsewhere), `output` (DNAT for connections made on the host
itself, loopback included) and `postrouting` (masquerade of loopback sources, which the
guest could not answer). libvirt's own rules (iptables, here the nf_tables backend) live in
other tables and are never touched; the two coexist because each hook runs every table's
chain in turn.

Two host facts the rules depend on:
- A connection to 127.0.0.1 that is DNATed to a guest leaves through the bridge with a
  loopback source, which the kernel drops as a martian unless `route_localnet` is set on
  that bridge: nbcloud sets it on the instance's bridge (only there) when it adds a forward.
- For clients outside the host (prerouting), libvirt's FORWARD rules of a `nat` network
  reject new connections into it; forwards from outside work into `open` and `routed`
  networks, and into `nat` ones only where that REJECT is lifted by hand.

The nft program is driven with its JSON syntax (built as Python objects, never as text),
and each rule carries the comment `nbcloud:NAME` so it can be found and removed. The
inventory records each forward as kind "floating", spec {"instance", "port", "host_port",
"host_address", "guest_ip", "proto"}.
"""
from __future__ import annotations

import html
import ipaddress
import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core.display import Table
from nbcloud.core.errors import (
    AlreadyExists,
    CloudError,
    HostError,
    InvalidSpec,
    NotFound,
)
from nbcloud.core.spec import check_name

if TYPE_CHECKING:
    from nbcloud.api import Cloud

KIND = "floating"
TABLE = "nbcloud"
HOST_PORTS = range(20000, 30000)       # where a host port is picked when none is given
PROTOCOLS = ("tcp", "udp")
_CHAINS = {"prerouting": ("prerouting", -100), "output": ("output", -100),
           "postrouting": ("postrouting", 100)}


@dataclass(frozen=True)
class Forward:
    """host_address:host_port -> instance (guest_ip):port. host_address "" = any address
    of the host."""
    name: str
    instance: str
    port: int
    host_port: int
    host_address: str = ""
    guest_ip: str = ""
    proto: str = "tcp"

    def spec(self) -> dict:
        return {"instance": self.instance, "port": self.port, "host_port": self.host_port,
                "host_address": self.host_address, "guest_ip": self.guest_ip,
                "proto": self.proto}

    @property
    def endpoint(self) -> str:
        return f"{self.host_address or '*'}:{self.host_port}"

    def __repr__(self) -> str:
        return (f"<Forward {self.name} {self.proto} {self.endpoint} -> {self.instance} "
                f"({self.guest_ip}):{self.port}>")

    def _repr_html_(self) -> str:
        return (f"<b>port forward</b> {html.escape(self.name)}: {self.proto} "
                f"{html.escape(self.endpoint)} &rarr; {html.escape(self.instance)} "
                f"({html.escape(self.guest_ip)}):{self.port}")


def check_port(value: object, what: str = "port") -> int:
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise InvalidSpec(f"{what} {value!r} is not allowed: use a port 1-65535")
    return port


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


# ----- the nft rules -------------------------------------------------------------------
def _match(field: str, protocol: str, right) -> dict:
    return {"match": {"op": "==", "left": {"payload": {"protocol": protocol,
                                                       "field": field}}, "right": right}}


def rule_exprs(f: Forward, chain: str) -> list[dict]:
    """The nft JSON expressions of forward `f`'s rule in `chain`."""
    if chain == "postrouting":
        # connections from the host's loopback, DNATed to this guest: answerable only
        # with the bridge's address as their source
        return [_match("saddr", "ip", {"prefix": {"addr": "127.0.0.0", "len": 8}}),
                _match("daddr", "ip", f.guest_ip),
                _match("dport", f.proto, f.port),
                {"masquerade": None}]
    exprs = []
    if f.host_address:
        exprs.append(_match("daddr", "ip", f.host_address))
    else:
        exprs.append({"match": {"op": "==", "left": {"fib": {"result": "type",
                                                            "flags": ["daddr"]}},
                                "right": "local"}})
    exprs += [_match("dport", f.proto, f.host_port),
              {"dnat": {"addr": f.guest_ip, "port": f.port}}]
    return exprs


def table_commands() -> list[dict]:
    """`add` the table and its chains (a no-op where they exist)."""
    cmds: list[dict] = [{"add": {"table": {"family": "ip", "name": TABLE}}}]
    for chain, (hook, prio) in _CHAINS.items():
        cmds.append({"add": {"chain": {"family": "ip", "table": TABLE, "name": chain,
                                       "type": "nat", "hook": hook, "prio": prio,
                                       "policy": "accept"}}})
    return cmds


def add_commands(f: Forward) -> list[dict]:
    return [{"add": {"rule": {"family": "ip", "table": TABLE, "chain": chain,
                              "comment": f"nbcloud:{f.name}", "expr": rule_exprs(f, chain)}}}
            for chain in _CHAINS]


class Nft:
    """The `nft` program, in this process's network namespace."""

    def __init__(self, binary: str | None = None):
        self.binary = binary or shutil.which("nft") or "/usr/sbin/nft"

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        if not Path(self.binary).exists():
            raise HostError("nft is not installed: `apt-get install nftables` "
                            "(scripts/setup.sh does)")
        proc = subprocess.run([self.binary, *args], input=stdin, capture_output=True,
                              text=True, timeout=30, check=False)
        if proc.returncode != 0:
            line = (proc.stderr.strip().splitlines() or ["(no message)"])[0]
            raise HostError(f"nft failed: {line}")
        return proc.stdout

    def apply(self, commands: list[dict]) -> None:
        """Run `commands` as one nft transaction (all or nothing)."""
        self._run(["-j", "-f", "-"], json.dumps({"nftables": commands}))

    def rules(self) -> list[dict]:
        """The rules of nbcloud's table: dicts with chain, handle, comment ([] if none)."""
        try:
            out = self._run(["-j", "list", "table", "ip", TABLE])
        except HostError as exc:
            if "No such file" in str(exc):
                return []
            raise
        items = json.loads(out).get("nftables", [])
        return [i["rule"] for i in items if "rule" in i]


class FloatingAddresses:
    """`cloud.floating`: create, list and delete port forwards."""

    def __init__(self, cloud: Cloud, nft: Nft | None = None):
        self.cloud = cloud
        self.nft = nft or Nft()

    def list(self) -> list[Forward]:
        return [Forward(r.name, r.spec["instance"], r.spec["port"], r.spec["host_port"],
                        r.spec.get("host_address", ""), r.spec.get("guest_ip", ""),
                        r.spec.get("proto", "tcp"))
                for r in self.cloud.inventory.resources(self.cloud.uri, KIND)]

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
        cmds = table_commands()
        for f in missing:
            self._allow_loopback(self.cloud.backend.metadata(f.instance))
            cmds += add_commands(f)
        if missing:
            self.nft.apply(cmds)
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
        meta = self.cloud.backend.metadata(instance)  # NotFound / NotManaged
        guest_ip = meta.get("ip", "")
        if not guest_ip:
            raise CloudError(f"instance {instance!r} has no address to forward to")
        name = f"{instance}-{hport}"
        fwd = Forward(name, instance, port, hport, address, guest_ip, proto)
        self._allow_loopback(meta)
        with self.cloud.inventory.operation(self.cloud.uri, "create", KIND, name,
                                            **fwd.spec()):
            self.nft.apply(table_commands() + add_commands(fwd))
            self.cloud.inventory.put(self.cloud.uri, KIND, name, state="active",
                                     spec=fwd.spec(), stack=meta.get("stack", "adhoc"))
        return fwd

    def _allow_loopback(self, meta: dict[str, str]) -> None:
        """route_localnet on the bridge of the instance's first network (see the module
        docstring); refuses where that bridge is not in this network namespace."""
        network = (meta.get("networks") or "nbcloud").split(",")[0]
        bridge = self.cloud.backend.network(network).bridge
        knob = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
        if not knob.exists():
            raise HostError(f"bridge {bridge} of network {network!r} is not in this network "
                            "namespace: port forwards are made where the daemon's networks "
                            "are (run nbcloud inside its namespace)")
        if knob.read_text().strip() != "1":
            knob.write_text("1\n")

    def delete(self, name: str) -> None:
        fwd = self.get(name)
        with self.cloud.inventory.operation(self.cloud.uri, "delete", KIND, name):
            self._remove_rules({fwd.name})
            self.cloud.inventory.remove(self.cloud.uri, KIND, name)

    def _remove_rules(self, names: set[str]) -> None:
        comments = {f"nbcloud:{n}" for n in names}
        cmds = [{"delete": {"rule": {"family": "ip", "table": TABLE, "chain": r["chain"],
                                     "handle": r["handle"]}}}
                for r in self.nft.rules() if r.get("comment") in comments]
        if cmds:
            self.nft.apply(cmds)

    def instance_deleted(self, instance: str) -> list[str]:
        """Remove the forwards of deleted instance `instance`; returns their names."""
        gone = [f.name for f in self.list() if f.instance == instance]
        if gone:
            self._remove_rules(set(gone))
            for name in gone:
                self.cloud.inventory.remove(self.cloud.uri, KIND, name)
        return gone

    def live(self) -> dict[str, list[str]]:
        """forward name -> chains where its rule is, as nft shows it now."""
        out: dict[str, list[str]] = {}
        for r in self.nft.rules():
            comment = r.get("comment", "")
            if comment.startswith("nbcloud:"):
                out.setdefault(comment.split(":", 1)[1], []).append(r["chain"])
        return out
