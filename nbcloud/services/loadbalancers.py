"""Load balancers: `cloud.lbs` (create, get, list, delete, member add/remove).

A balancer is an inventory resource of kind "loadbalancer", spec {"network", "port",
"members": [instance names], "algorithm", "keep_client_address", "address"}; the engine
is the provider's (on libvirt, a supervised HAProxy listening on the network's gateway
address at the balancer's port, configured from that record: providers/libvirt/haproxy.py).
Members must have a
NIC on the balancer's network; `--members 'web-*'` is expanded once, at create or add.
A balancer whose process died is started again when nbcloud touches it (get, list), or
within a second by the host agent where one serves the URI (then only by the agent).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from nbcloud.context import Context
from nbcloud.core.converge import apply_until_stable
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.handle import Handle
from nbcloud.core.spec import InvalidSpec, check_name, check_port

KIND = "loadbalancer"
ALGORITHMS = ("roundrobin", "leastconn")


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


class LoadBalancer(Handle):
    """A handle on one balancer; `members`, `address` and `health` read live state."""

    noun = "load balancer"

    @property
    def spec(self) -> dict:
        return self.service.record(self.name).spec

    @property
    def address(self) -> str:
        """Where clients connect: GATEWAY:PORT on the balancer's network."""
        return f"{self.spec['address']}:{self.spec['port']}"

    @property
    def members(self) -> list[str]:
        return list(self.spec["members"])

    def health(self) -> dict[str, str]:
        """member -> 'UP' / 'DOWN' / ... from the balancer's own health checks."""
        return self.service.provider.balancer_health(self.name)

    def rows(self) -> dict[str, object]:
        s, health = self.spec, self.health()
        return {"network": s["network"], "listens on": f"{s['address']}:{s['port']}",
                "algorithm": s["algorithm"],
                "client address": "kept" if s["keep_client_address"] else "the balancer's",
                "members": ", ".join(f"{m} ({health.get(m, '?')})" for m in s["members"])
                or "-"}

    def summary(self, rows: dict[str, object]) -> str:
        s = self.spec
        return (f"{s['algorithm']} on {s['network']} {s['address']}:{s['port']} "
                f"members={','.join(s['members']) or '-'}")


class LoadBalancers:
    """`cloud.lbs`: the host-side L4 balancers."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider

    # ----- reading --------------------------------------------------------------------
    def record(self, name: str):
        """Balancer `name`'s inventory record; NotFound in one line."""
        check_name(name, "load balancer name")
        for r in self.ctx.inventory.all(KIND):
            if r.name == name:
                return r
        raise NotFound(f"load balancer {name!r} does not exist (see `%cloud lb list`)")

    def addresses(self, network: str) -> dict[str, str]:
        """instance name -> its address on `network`, for every nbcloud instance there."""
        out = {}
        for name, meta in self.provider.managed().items():
            for pair in filter(None, meta.get("ips", "").split(",")):
                net, _, ip = pair.partition("=")
                if net == network and ip:
                    out[name] = ip
        return out

    def get(self, name: str) -> LoadBalancer:
        """The balancer `name`; its HAProxy is started again if it died."""
        self.record(name)
        self._touch(name)
        return LoadBalancer(self, name)

    __getitem__ = get

    def list(self) -> list[LoadBalancer]:
        return [LoadBalancer(self, r.name)
                for r in self.ctx.inventory.all(KIND)]

    def table(self) -> Table:
        rows = []
        for r in self.ctx.inventory.all(KIND):
            s = r.spec
            try:
                self._touch(r.name)       # listing touches them: a dead one starts again
            except CloudError:
                pass                      # shown as stopped below
            health = self.provider.balancer_health(r.name)
            up = sum(health.get(m) == "UP" for m in s["members"])
            running = self.provider.balancer_running(r.name)
            rows.append((r.name, s["network"], f"{s['address']}:{s['port']}",
                         s["algorithm"], ", ".join(s["members"]) or "-",
                         f"{up}/{len(s['members'])}",
                         {True: "running", False: "stopped", None: "-"}[running]))
        return Table(["name", "network", "listens on", "algorithm", "members", "up",
                      "haproxy"], rows, "load balancers")

    # ----- configuration --------------------------------------------------------------
    def _resolve(self, network: str, patterns: tuple[str, ...] | list[str]) -> list[str]:
        """Instance names on `network` matching `patterns` (names or globs like web-*);
        InvalidSpec, naming the culprit, if one matches no instance there."""
        on_net = self.addresses(network)
        managed = None
        out: list[str] = []
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise InvalidSpec(f"member {pattern!r} is not a name or a pattern")
            found = sorted(n for n in on_net if fnmatch.fnmatchcase(n, pattern))
            if not found:
                if managed is None:
                    managed = self.provider.managed()
                if pattern in managed:
                    raise InvalidSpec(f"instance {pattern!r} is not on network {network!r}: "
                                      "a member must have a NIC on the balancer's network")
                raise InvalidSpec(f"member {pattern!r} matches no instance on network "
                                  f"{network!r}: see `%cloud instance list`")
            out += [n for n in found if n not in out]
        return out

    def ensure(self, name: str) -> bool:
        """Start `name`'s HAProxy again if it is not running (or runs an old config)."""
        if not self.provider.runs_balancers:
            return False
        spec = self.record(name).spec
        return self.provider.ensure_balancer(name, spec, self.addresses(spec["network"]))

    def _touch(self, name: str) -> None:
        """Restart a dead balancer on being read, unless the host agent supervises."""
        if not self.ctx.inventory.agent_serves():
            self.ensure(name)

    def _current(self, name: str) -> dict | None:
        """Balancer `name`'s record as the engine should serve it (None: gone)."""
        r = next((r for r in self.ctx.inventory.all(KIND) if r.name == name), None)
        return r.spec if r is not None and r.state != "deleting" else None

    def _apply(self, name: str) -> None:
        """Make `name`'s HAProxy serve what its record says (stopped if the record is gone),
        until the record holds still (`core.converge.apply_until_stable`): another thread or
        process may change it meanwhile."""
        def apply(spec: dict | None) -> None:
            if spec is None:
                self.provider.stop_balancer(name)
            else:
                self.provider.apply_balancer(name, spec, self.addresses(spec["network"]))
        apply_until_stable(lambda: self._current(name), apply)

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
        self.provider.require("loadbalancers")
        if not self.provider.balancers_possible:
            raise CloudError(f"load balancers run beside the daemon, and {self.ctx.uri} "
                             "is another machine's (or a session daemon's): use "
                             "qemu:///system on the host itself")
        gateway = self.provider.network(network).gateway
        port = check_port(port)
        spec = LbSpec(name, network, port, tuple(self._resolve(network, members)),
                      algorithm, keep_client_address, member_port)
        record = spec.record(gateway)

        def make(current) -> dict:
            if current is not None:
                raise AlreadyExists(f"load balancer {name!r} exists already: pick another "
                                    "name or delete it first")
            for r in self.ctx.inventory.all(KIND):
                if r.spec["network"] == network and r.spec["port"] == port:
                    raise CloudError(f"port {port} on network {network!r} is taken by load "
                                     f"balancer {r.name!r}: pick another port")
            return record
        make(next((r for r in self.ctx.inventory.all(KIND) if r.name == name), None))
        ctx = self.ctx
        with ctx.inventory.operation("create", KIND, name, network=network,
                                     port=port, members=list(spec.members),
                                     algorithm=algorithm, stack=stack) as op:
            ctx.inventory.update(KIND, name, make, state="active", stack=stack)
            try:
                self._apply(name)
            except BaseException:
                ctx.inventory.remove(KIND, name)
                self.provider.stop_balancer(name)
                raise
            op.detail = f"{gateway}:{port}"
        return LoadBalancer(self, name)

    def _change(self, name: str, verb: str, edit: Callable[[dict], dict],
                **logged) -> None:
        """Read balancer `name`'s record, `edit` it (the members resolved already; it may
        raise to change nothing) and write it, in one transaction; then make HAProxy
        serve it. If HAProxy refuses, what this change did is taken back."""
        self.record(name)
        done: dict = {}

        def step(current) -> dict:
            if current is None or current.state == "deleting":
                raise NotFound(f"load balancer {name!r} does not exist (see `%cloud lb "
                               "list`)")
            before = current.spec
            spec = edit({**before, "members": list(before["members"])})
            spec["members"] = list(dict.fromkeys(spec["members"]))
            LbSpec(name, spec["network"], spec["port"], tuple(spec["members"]),
                   spec["algorithm"], spec["keep_client_address"], spec.get("member_port"))
            done.update(before=before, after=spec)
            return spec
        with self.ctx.inventory.operation(verb, KIND, name, **logged):
            self.ctx.inventory.update(KIND, name, step)
            try:
                self._apply(name)
            except BaseException:
                self.ctx.inventory.update(KIND, name, lambda r: r and _undone(
                    r.spec, done["before"], done["after"]))
                self._apply(name)
                raise

    def set_members(self, name: str, members: list[str], verb: str = "update") -> None:
        """Replace the member list (names already resolved) and reload HAProxy."""
        self._change(name, verb, lambda spec: {**spec, "members": list(members)},
                     members=list(members))

    def update(self, name: str, members=None, algorithm: str | None = None,
               member_port: int | None = None) -> LoadBalancer:
        """Converge balancer `name` to these members (names or globs), algorithm and
        member port (what a stack's `loadbalancer:` entry declares)."""
        spec = self.record(name).spec
        changes: dict = {}
        if members is not None:
            members = (members,) if isinstance(members, str) else tuple(members)
            changes["members"] = self._resolve(spec["network"], members)
        if algorithm is not None:
            changes["algorithm"] = algorithm
        if member_port is not None:
            changes["member_port"] = check_port(member_port, "member port")
        self._change(name, "update", lambda current: {**current, **changes}, **changes)
        return LoadBalancer(self, name)

    def add_members(self, name: str, members) -> LoadBalancer:
        """Add instances (names or globs) on the balancer's network."""
        members = (members,) if isinstance(members, str) else tuple(members)
        found = self._resolve(self.record(name).spec["network"], members)
        self._change(name, "member add",
                     lambda spec: {**spec, "members": spec["members"] + found},
                     members=found)
        return LoadBalancer(self, name)

    def remove_members(self, name: str, members, *, missing_ok: bool = False
                       ) -> LoadBalancer:
        """Take instances out of the balancer; one that is not a member is refused,
        unless `missing_ok`."""
        members = (members,) if isinstance(members, str) else tuple(members)

        def edit(spec: dict) -> dict:
            for m in members:
                if m not in spec["members"] and not missing_ok:
                    raise InvalidSpec(f"{m!r} is not a member of load balancer {name!r} "
                                      f"(members: {', '.join(spec['members']) or 'none'})")
            return {**spec, "members": [m for m in spec["members"] if m not in members]}
        edit(self.record(name).spec)     # refused before the operation is logged
        self._change(name, "member remove", edit, members=list(members))
        return LoadBalancer(self, name)

    def delete(self, name: str) -> None:
        """Stop the balancer's HAProxy and forget it."""
        self.record(name)
        ctx = self.ctx
        keeping = any(r.spec.get("keep_client_address") for r in ctx.inventory.all(KIND)
                      if r.name != name)
        with ctx.inventory.operation("delete", KIND, name):
            # marked first: a change racing with the delete finds it gone, and whoever
            # applies last stops HAProxy (`_apply` of a record that is gone)
            ctx.inventory.update(KIND, name, lambda r: r and r.spec, state="deleting")
            self.provider.stop_balancer(name, last_keeping_client=not keeping)
            ctx.inventory.remove(KIND, name)


def _undone(current: dict, before: dict, after: dict) -> dict:
    """`current` with one change (`before` -> `after`) taken back, keeping what others
    changed since: members it added leave, members it removed return, fields it set
    go back if nobody changed them again."""
    added = [m for m in after["members"] if m not in before["members"]]
    removed = [m for m in before["members"] if m not in after["members"]]
    out = {k: (before.get(k, v) if v == after.get(k) else v)
           for k, v in current.items() if k != "members"}
    out["members"] = [m for m in current["members"] if m not in added] + \
        [m for m in removed if m not in current["members"]]
    return out
