"""Load balancers: `cloud.lbs` (create, get, list, delete, member add/remove).

A balancer is an inventory resource of kind "loadbalancer", spec {"network", "port",
"members": [instance names], "algorithm", "keep_client_address", "address"}; the engine
is a supervised HAProxy (haproxy.py) listening on the network's gateway address at the
balancer's port, whose configuration is generated from that record. Members must have a
NIC on the balancer's network; `--members 'web-*'` is expanded once, at create or add.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core import config
from nbcloud.core.display import Table, card
from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.spec import InvalidSpec, check_name
from nbcloud.providers.libvirt import haproxy
from nbcloud.providers.libvirt.provider import is_local

if TYPE_CHECKING:
    from nbcloud.api import Cloud

KIND = "loadbalancer"
ALGORITHMS = ("roundrobin", "leastconn")


def check_port(value: object, what: str = "port") -> int:
    try:
        port = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        port = 0
    if isinstance(value, bool) or not 1 <= port <= 65535 or str(port) != str(value).strip():
        raise InvalidSpec(f"{what} {value!r} is not allowed: use a whole number from 1 "
                          "to 65535")
    return port


@dataclass(frozen=True)
class LbSpec:
    """A balancer's desired state, validated."""
    name: str
    network: str
    port: int = 80
    members: tuple[str, ...] = ()
    algorithm: str = "roundrobin"
    keep_client_address: bool = False
    member_port: int | None = None     # None: the balancer's own port

    def __post_init__(self):
        check_name(self.name, "load balancer name")
        check_name(self.network, "network name")
        object.__setattr__(self, "port", check_port(self.port))
        object.__setattr__(self, "member_port",
                           check_port(self.member_port if self.member_port is not None
                                      else self.port, "member port"))
        if self.algorithm not in ALGORITHMS:
            raise InvalidSpec(f"algorithm {self.algorithm!r} is not offered: use "
                              + " or ".join(ALGORITHMS))
        for m in self.members:
            check_name(m, "member name")

    def record(self, address: str) -> dict:
        return {"network": self.network, "port": self.port, "members": list(self.members),
                "algorithm": self.algorithm, "keep_client_address": self.keep_client_address,
                "member_port": self.member_port, "address": address}


def _addresses(cloud: Cloud, network: str) -> dict[str, str]:
    """instance name -> its address on `network`, for every nbcloud instance there."""
    out = {}
    for name, meta in cloud.backend.managed().items():
        for pair in filter(None, meta.get("ips", "").split(",")):
            net, _, ip = pair.partition("=")
            if net == network and ip:
                out[name] = ip
    return out


class LoadBalancer:
    """A handle on one balancer; `members`, `address` and `health` read live state."""

    def __init__(self, cloud: Cloud, name: str):
        self.cloud = cloud
        self.name = name

    @property
    def spec(self) -> dict:
        return self.cloud.lbs._record(self.name).spec

    @property
    def address(self) -> str:
        """Where clients connect: GATEWAY:PORT on the balancer's network."""
        return f"{self.spec['address']}:{self.spec['port']}"

    @property
    def members(self) -> list[str]:
        return list(self.spec["members"])

    def health(self) -> dict[str, str]:
        """member -> 'UP' / 'DOWN' / ... from HAProxy's own health checks."""
        return self.cloud.lbs._process(self.name).health()

    def __repr__(self) -> str:
        try:
            s = self.spec
        except NotFound:
            return f"<LoadBalancer {self.name} (gone)>"
        return (f"<LoadBalancer {self.name} {s['algorithm']} on {s['network']} "
                f"{s['address']}:{s['port']} members={','.join(s['members']) or '-'}>")

    def _repr_html_(self) -> str:
        try:
            s, health = self.spec, self.health()
        except NotFound:
            return card("load balancer", self.name, None)
        rows = {"network": s["network"], "listens on": f"{s['address']}:{s['port']}",
                "algorithm": s["algorithm"],
                "client address": "kept" if s["keep_client_address"] else "the balancer's",
                "members": ", ".join(f"{m} ({health.get(m, '?')})" for m in s["members"])
                or "-"}
        return card("load balancer", self.name, rows)


class LoadBalancers:
    """`cloud.lbs`: the host-side L4 balancers."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        # test:///default has no bridge to listen on: configurations are generated and
        # checked by `haproxy -c`, but no process is started
        self.runs_processes = cloud.uri.startswith("qemu") and is_local(cloud.uri)

    # ----- reading --------------------------------------------------------------------
    def _record(self, name: str):
        check_name(name, "load balancer name")
        for r in self.cloud.inventory.resources(self.cloud.uri, KIND):
            if r.name == name:
                return r
        raise NotFound(f"load balancer {name!r} does not exist (see `%cloud lb list`)")

    def _workdir(self) -> Path:
        return config.home() / "lb"

    def _process(self, name: str) -> haproxy.Process:
        return haproxy.Process(self._workdir(), name)

    def get(self, name: str) -> LoadBalancer:
        """The balancer `name`; its HAProxy is started again if it died."""
        self._record(name)
        self.ensure(name)
        return LoadBalancer(self.cloud, name)

    __getitem__ = get

    def list(self) -> list[LoadBalancer]:
        return [LoadBalancer(self.cloud, r.name)
                for r in self.cloud.inventory.resources(self.cloud.uri, KIND)]

    def table(self) -> Table:
        rows = []
        for r in self.cloud.inventory.resources(self.cloud.uri, KIND):
            s = r.spec
            try:
                self.ensure(r.name)       # listing touches them: a dead one starts again
            except CloudError:
                pass                      # shown as stopped below
            health = self._process(r.name).health()
            up = sum(health.get(m) == "UP" for m in s["members"])
            running = self._process(r.name).alive() if self.runs_processes else None
            rows.append((r.name, s["network"], f"{s['address']}:{s['port']}",
                         s["algorithm"], ", ".join(s["members"]) or "-",
                         f"{up}/{len(s['members'])}",
                         {True: "running", False: "stopped", None: "-"}[running]))
        return Table(["name", "network", "listens on", "algorithm", "members", "up",
                      "haproxy"], rows, "load balancers")

    # ----- configuration --------------------------------------------------------------
    def _config(self, name: str, spec: dict) -> str:
        addresses = _addresses(self.cloud, spec["network"])
        port = spec.get("member_port") or spec["port"]
        backends = [haproxy.Backend(m, addresses[m], port)
                    for m in spec["members"] if m in addresses]  # deleted ones drop out
        sock = self._process(name).socket if self.runs_processes else None
        return haproxy.config_text(name, spec["address"], spec["port"], spec["algorithm"],
                                   backends, spec["keep_client_address"], sock)

    def _resolve(self, network: str, patterns: tuple[str, ...] | list[str]) -> list[str]:
        """Instance names on `network` matching `patterns` (names or globs like web-*);
        InvalidSpec, naming the culprit, if one matches no instance there."""
        on_net = _addresses(self.cloud, network)
        managed = None
        out: list[str] = []
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise InvalidSpec(f"member {pattern!r} is not a name or a pattern")
            found = sorted(n for n in on_net if fnmatch.fnmatchcase(n, pattern))
            if not found:
                if managed is None:
                    managed = self.cloud.backend.managed()
                if pattern in managed:
                    raise InvalidSpec(f"instance {pattern!r} is not on network {network!r}: "
                                      "a member must have a NIC on the balancer's network")
                raise InvalidSpec(f"member {pattern!r} matches no instance on network "
                                  f"{network!r}: see `%cloud instance list`")
            out += [n for n in found if n not in out]
        return out

    def ensure(self, name: str) -> bool:
        """Start `name`'s HAProxy again if it is not running (or runs an old config)."""
        if not self.runs_processes:
            return False
        spec = self._record(name).spec
        return self._process(name).ensure(self._config(name, spec))

    def _apply(self, name: str, spec: dict) -> None:
        text = self._config(name, spec)
        haproxy.check(text, self._workdir())
        if self.runs_processes:
            if spec["keep_client_address"]:
                why = haproxy.tproxy_setup()
                if why:
                    raise CloudError(f"cannot keep the client address here ({why}): "
                                     "create the balancer without --keep-client-address")
            self._process(name).start(text)

    # ----- writes ---------------------------------------------------------------------
    def create(self, name: str, network: str, port: int = 80, members=(),
               algorithm: str = "roundrobin", keep_client_address: bool = False, *,
               member_port: int | None = None, stack: str = "adhoc") -> LoadBalancer:
        """Create balancer `name` on `network`'s gateway at `port` over `members`
        (instance names or globs) serving on `member_port` (default: `port`); refused,
        with nothing changed, on any bad input."""
        members = (members,) if isinstance(members, str) else tuple(members)
        LbSpec(name, network, port, (), algorithm, keep_client_address,
               member_port)  # validate early
        if not self.runs_processes and not self.cloud.uri.startswith("test:"):
            raise CloudError(f"load balancers run beside the daemon, and {self.cloud.uri} "
                             "is another machine's (or a session daemon's): use "
                             "qemu:///system on the host itself")
        if any(r.name == name for r in self.cloud.inventory.resources(self.cloud.uri, KIND)):
            raise AlreadyExists(f"load balancer {name!r} exists already: pick another name "
                                "or delete it first")
        gateway = self.cloud.networks.get(network).gateway
        port = check_port(port)
        for r in self.cloud.inventory.resources(self.cloud.uri, KIND):
            if r.spec["network"] == network and r.spec["port"] == port:
                raise CloudError(f"port {port} on network {network!r} is taken by load "
                                 f"balancer {r.name!r}: pick another port")
        spec = LbSpec(name, network, port, tuple(self._resolve(network, members)),
                      algorithm, keep_client_address, member_port)
        record = spec.record(gateway)
        cloud = self.cloud
        with cloud.inventory.operation(cloud.uri, "create", KIND, name, network=network,
                                       port=port, members=list(spec.members),
                                       algorithm=algorithm, stack=stack) as op:
            try:
                self._apply(name, record)
            except BaseException:
                self._process(name).stop()
                raise
            cloud.inventory.put(cloud.uri, KIND, name, state="active", spec=record,
                                stack=stack)
            op.detail = f"{gateway}:{port}"
        return LoadBalancer(cloud, name)

    def _change(self, name: str, verb: str, **changes) -> None:
        """Change fields of the record (values already resolved), then reload HAProxy."""
        r = self._record(name)
        spec = {**r.spec, **changes}
        spec["members"] = list(dict.fromkeys(spec["members"]))
        LbSpec(name, spec["network"], spec["port"], tuple(spec["members"]),
               spec["algorithm"], spec["keep_client_address"], spec.get("member_port"))
        cloud = self.cloud
        with cloud.inventory.operation(cloud.uri, verb, KIND, name, **changes):
            self._apply(name, spec)
            cloud.inventory.put(cloud.uri, KIND, name, state=r.state, spec=spec,
                                stack=r.stack)

    def set_members(self, name: str, members: list[str], verb: str = "update") -> None:
        """Replace the member list (names already resolved) and reload HAProxy."""
        self._change(name, verb, members=list(members))

    def update(self, name: str, members=None, algorithm: str | None = None,
               member_port: int | None = None) -> LoadBalancer:
        """Converge balancer `name` to these members (names or globs), algorithm and
        member port (what a stack's `loadbalancer:` entry declares)."""
        spec = self._record(name).spec
        changes: dict = {}
        if members is not None:
            members = (members,) if isinstance(members, str) else tuple(members)
            changes["members"] = self._resolve(spec["network"], members)
        if algorithm is not None:
            changes["algorithm"] = algorithm
        if member_port is not None:
            changes["member_port"] = check_port(member_port, "member port")
        self._change(name, "update", **changes)
        return LoadBalancer(self.cloud, name)

    def add_members(self, name: str, members) -> LoadBalancer:
        """Add instances (names or globs) on the balancer's network."""
        members = (members,) if isinstance(members, str) else tuple(members)
        spec = self._record(name).spec
        found = self._resolve(spec["network"], members)
        self.set_members(name, spec["members"] + found, "member add")
        return LoadBalancer(self.cloud, name)

    def remove_members(self, name: str, members) -> LoadBalancer:
        members = (members,) if isinstance(members, str) else tuple(members)
        spec = self._record(name).spec
        for m in members:
            if m not in spec["members"]:
                raise InvalidSpec(f"{m!r} is not a member of load balancer {name!r} "
                                  f"(members: {', '.join(spec['members']) or 'none'})")
        self.set_members(name, [m for m in spec["members"] if m not in members],
                         "member remove")
        return LoadBalancer(self.cloud, name)

    def delete(self, name: str) -> None:
        """Stop the balancer's HAProxy and forget it."""
        self._record(name)
        cloud = self.cloud
        with cloud.inventory.operation(cloud.uri, "delete", KIND, name):
            self._process(name).stop()
            cloud.inventory.remove(cloud.uri, KIND, name)
        if self.runs_processes and not any(
                r.spec.get("keep_client_address")
                for r in cloud.inventory.resources(cloud.uri, KIND)):
            haproxy.tproxy_teardown()
