"""Floating addresses (port forwards) on a libvirt host: nftables DNAT.

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
and each rule carries the comment `nbcloud:NAME` so it can be found and removed.
"""
from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
from pathlib import Path

from nbcloud.core.errors import CloudError, HostError, InvalidSpec
from nbcloud.providers.types import Forward

TABLE = "nbcloud"
HOST_PORTS = range(20000, 30000)       # where a host port is picked when none is given
_CHAINS = {"prerouting": ("prerouting", -100), "output": ("output", -100),
           "postrouting": ("postrouting", 100)}


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


class ForwardMixin:
    """The port-forward operations of `LibvirtProvider` (providers/base.py, Forwards)."""

    @property
    def nft(self) -> Nft:
        if getattr(self, "_nft", None) is None:
            self._nft = Nft()
        return self._nft

    def forward_address(self, instance: str, port: int, host_port: int | None,
                        host_address: str | None, taken: set[int]) -> tuple[str, int]:
        """(host address, host port) of a new forward: `host_address` ('' = any of the
        host's), `host_port` or a free one of 20000-29999 not in `taken`."""
        address = check_host_address(host_address)
        return address, host_port if host_port is not None else \
            self._free_port(taken, address)

    @staticmethod
    def _free_port(taken: set[int], address: str) -> int:
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

    def add_forwards(self, forwards: list[Forward]) -> None:
        """Add the rules of `forwards` in one nft transaction (the table and its chains
        made if missing), after letting each instance's bridge route loopback sources."""
        cmds = table_commands()
        for f in forwards:
            self._allow_loopback(self.metadata(f.instance))
            cmds += add_commands(f)
        self.nft.apply(cmds)

    def remove_forwards(self, names: set[str]) -> None:
        comments = {f"nbcloud:{n}" for n in names}
        cmds = [{"delete": {"rule": {"family": "ip", "table": TABLE, "chain": r["chain"],
                                     "handle": r["handle"]}}}
                for r in self.nft.rules() if r.get("comment") in comments]
        if cmds:
            self.nft.apply(cmds)

    def live_forwards(self, forwards: list[Forward] | None = None) -> dict[str, list[str]]:
        """forward name -> chains where its rule is, as nft shows it now."""
        out: dict[str, list[str]] = {}
        for r in self.nft.rules():
            comment = r.get("comment", "")
            if comment.startswith("nbcloud:"):
                out.setdefault(comment.split(":", 1)[1], []).append(r["chain"])
        return out

    def _allow_loopback(self, meta: dict[str, str]) -> None:
        """route_localnet on the bridge of the instance's first network (see the module
        docstring); refuses where that bridge is not in this network namespace."""
        network = (meta.get("networks") or "nbcloud").split(",")[0]
        bridge = self.network(network).bridge
        knob = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
        if not knob.exists():
            raise HostError(f"bridge {bridge} of network {network!r} is not in this network "
                            "namespace: port forwards are made where the daemon's networks "
                            "are (run nbcloud inside its namespace)")
        if knob.read_text().strip() != "1":
            knob.write_text("1\n")
