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
  that bridge: nbcloud sets it on the guest's bridge only while a forward from loopback
  (127.0.0.0/8 or any host address) leads there, and turns it off after the last one.
  `route_localnet` also makes the host accept packets *for* 127.0.0.0/8 from that bridge:
  a guest that routes 127.0.0.1 through its gateway would reach services listening on the
  host's loopback only (Kubernetes' CVE-2020-8558). So the table's `guard` chain, at the
  raw priority (before conntrack and NAT), drops every packet to or from 127.0.0.0/8 that
  does not arrive on `lo`; it is in place before any bridge gets `route_localnet`.
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
# Ports below this belong to the host's own services (ssh 22, DNS 53, DHCP 67...): a
# forward there would take the host's own connections and its clients' to the guest.
FIRST_HOST_PORT = 1024
_CHAINS = {"prerouting": ("prerouting", -100), "output": ("output", -100),
           "postrouting": ("postrouting", 100)}
GUARD = "guard"
_RAW = -300          # before conntrack (-200) and DNAT (-100)
_LOOPBACK = {"prefix": {"addr": "127.0.0.0", "len": 8}}


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


def needs_loopback(f: Forward) -> bool:
    """Whether clients on the host's loopback can use forward `f` (then the guest's
    bridge needs `route_localnet`)."""
    return not f.host_address or ipaddress.IPv4Address(f.host_address).is_loopback


def guard_commands() -> list[dict]:
    """The `guard` chain, emptied and filled again in the same transaction: packets to
    or from 127.0.0.0/8 that do not arrive on `lo` are dropped (see the module)."""
    chain = {"family": "ip", "table": TABLE, "name": GUARD}
    not_lo = {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}
    return [{"add": {"chain": {**chain, "type": "filter", "hook": "prerouting",
                               "prio": _RAW, "policy": "accept"}}},
            {"flush": {"chain": chain}}] + [
        {"add": {"rule": {**{k: chain[k] for k in ("family", "table")}, "chain": GUARD,
                          "comment": f"nbcloud-guard: {field} 127.0.0.0/8 only from lo",
                          "expr": [not_lo, _match(field, "ip", _LOOPBACK), {"drop": None}]}}}
        for field in ("daddr", "saddr")]


def table_commands() -> list[dict]:
    """`add` the table and its chains (a no-op where they exist), and the guard."""
    cmds: list[dict] = [{"add": {"table": {"family": "ip", "name": TABLE}}}]
    for chain, (hook, prio) in _CHAINS.items():
        cmds.append({"add": {"chain": {"family": "ip", "table": TABLE, "name": chain,
                                       "type": "nat", "hook": hook, "prio": prio,
                                       "policy": "accept"}}})
    return cmds + guard_commands()


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


def port_in_use(address: str, port: int, proto: str) -> bool:
    """Whether a socket of this host (network namespace) holds `port` on `address` (any
    address: '')."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((address or "0.0.0.0", port))
        except OSError:
            return True
    return False


def check_host_port(port: int, address: str, proto: str) -> int:
    """A host port a forward may take: 1024-65535 and held by no host service, since
    the forward would capture that service's connections (the host's own included)."""
    if port < FIRST_HOST_PORT:
        raise InvalidSpec(f"host port {port} is below {FIRST_HOST_PORT}: those belong to the "
                          f"host's own services; use {FIRST_HOST_PORT}-65535")
    if port_in_use(address, port, proto):
        raise InvalidSpec(f"a service of this host listens on {proto} port {port}: a "
                          "forward would capture its connections; pick another host port")
    return port


class ForwardMixin:
    """The port-forward operations of `LibvirtProvider` (providers/base.py, Forwards)."""

    @property
    def nft(self) -> Nft:
        if getattr(self, "_nft", None) is None:
            self._nft = Nft()
        return self._nft

    def forward_address(self, instance: str, port: int, host_port: int | None,
                        host_address: str | None, taken: set[int],
                        proto: str = "tcp") -> tuple[str, int]:
        """(host address, host port) of a new forward: `host_address` ('' = any of the
        host's), `host_port` or a free one of 20000-29999 not in `taken`. A host port
        below 1024 or one a host service holds is refused."""
        address = check_host_address(host_address)
        if host_port is not None:
            return address, check_host_port(host_port, address, proto)
        for candidate in HOST_PORTS:
            if candidate not in taken and not port_in_use(address, candidate, proto):
                return address, candidate
        raise CloudError(f"no free host port in {HOST_PORTS.start}-{HOST_PORTS.stop - 1}")

    def add_forwards(self, forwards: list[Forward]) -> None:
        """Add the rules of `forwards` in one nft transaction (the table, its chains and
        the loopback guard made if missing), then let the bridges of those reachable from
        loopback route loopback sources."""
        cmds = table_commands()
        for f in forwards:
            self._bridge_knob(self.metadata(f.instance), f.guest_ip)  # refuses elsewhere
            cmds += add_commands(f)
        self.nft.apply(cmds)
        self._sync_route_localnet()

    def remove_forwards(self, names: set[str]) -> None:
        comments = {f"nbcloud:{n}" for n in names}
        cmds = [{"delete": {"rule": {"family": "ip", "table": TABLE, "chain": r["chain"],
                                     "handle": r["handle"]}}}
                for r in self.nft.rules() if r.get("comment") in comments]
        if cmds:
            self.nft.apply(cmds)
            self._sync_route_localnet()

    def live_forwards(self, forwards: list[Forward] | None = None) -> dict[str, list[str]]:
        """forward name -> chains where its rule is, as nft shows it now."""
        out: dict[str, list[str]] = {}
        for r in self.nft.rules():
            comment = r.get("comment", "")
            if comment.startswith("nbcloud:"):
                out.setdefault(comment.split(":", 1)[1], []).append(r["chain"])
        return out

    def _bridge_knob(self, meta: dict[str, str], guest_ip: str) -> Path:
        """The route_localnet knob of the bridge that leads to `guest_ip` (the instance's
        network holding it, else its first); refuses where that bridge is not in this
        network namespace."""
        names = [n for n in (meta.get("networks") or "nbcloud").split(",") if n]
        infos = [self.network(n) for n in names]
        info = next((i for i in infos if guest_ip and
                     ipaddress.IPv4Address(guest_ip) in i.network), infos[0])
        knob = Path(f"/proc/sys/net/ipv4/conf/{info.bridge}/route_localnet")
        if not knob.exists():
            raise HostError(f"bridge {info.bridge} of network {info.name!r} is not in this "
                            "network namespace: port forwards are made where the daemon's "
                            "networks are (run nbcloud inside its namespace)")
        return knob

    def _sync_route_localnet(self) -> None:
        """route_localnet on exactly the bridges of nbcloud's networks that a forward
        from loopback leads to (see the module docstring), from the rules nft has."""
        targets = []
        for r in self.nft.rules():
            if r.get("chain") != "output" or not r.get("comment", "").startswith("nbcloud:"):
                continue
            exprs = r.get("expr", [])
            first = exprs[0].get("match", {}) if exprs else {}
            dnat = next((e["dnat"] for e in exprs if "dnat" in e), {})
            src = "" if "fib" in first.get("left", {}) else first.get("right", "")
            if dnat.get("addr") and needs_loopback(Forward("", "", 1, 1, src, "")):
                targets.append(ipaddress.IPv4Address(dnat["addr"]))
        for info in self.network_infos():
            knob = Path(f"/proc/sys/net/ipv4/conf/{info.bridge}/route_localnet")
            if not self.network_managed(info) or not knob.exists():
                continue
            want = "1" if any(t in info.network for t in targets) else "0"
            if knob.read_text().strip() != want:
                knob.write_text(want + "\n")
