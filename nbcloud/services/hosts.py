"""Hosts: `cloud.hosts` (add, list, remove, drain), placement, migration, lost instances.

A cloud is opened on one URI, its home host; `add` joins other libvirt hosts to it, each
recorded in the inventory (kind `host`: its URI, allocation ratios, tunnel address) and
connected again whenever the cloud is opened. Every instance's record says its host.

Placement (core/placement.py) runs in one `BEGIN IMMEDIATE` transaction that also writes
the new instance's record (state `placing`, with its host and flavor): two notebooks, or
the threads of one `--count`, each see the others' claims, so a full host is not picked
twice. A cloud with no host record (one host, as ever) places nothing: everything goes to
the home host unchecked.

A host that stops answering is *down*: its instances are *lost* (not stopped: they may
well run on, unreachable from here), and HOST_DOWN tells the instance pools, which make
their lost members again elsewhere. When the host answers again, what it kept of
instances made again elsewhere is removed (fenced), so one name never runs twice.
"""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from nbcloud.context import Context
from nbcloud.core.display import Table
from nbcloud.core.errors import CloudError, Interrupted, InvalidSpec, NotFound
from nbcloud.core.events import HOST_DOWN, HOST_UP, INSTANCE_DELETED, INSTANCE_STATE
from nbcloud.core.placement import CPU_RATIO, RAM_RATIO, HostLoad, mib, place
from nbcloud.core.spec import check_name
from nbcloud.providers.types import HostInfo

KIND = "host"
#: instance records still being made: their host holds them before libvirt shows them
PENDING = ("placing", "starting")


#: libvirt transports a host may be reached by: not `ext` (it runs a local command) nor
#: any other that names a program to run
SCHEMES = ("qemu", "qemu+ssh", "qemu+libssh", "qemu+libssh2", "qemu+tcp", "qemu+tls",
           "qemu+unix", "test")


def check_uri(uri: object) -> str:
    """`uri` if it is a libvirt URI a host may have, else InvalidSpec in one line."""
    refused = InvalidSpec(f"URI {str(uri)[:100]!r} is not a libvirt URI nbcloud takes: use "
                          "qemu+ssh://USER@HOST/system, qemu+tcp://HOST/system or "
                          "qemu:///system")
    if not isinstance(uri, str) or len(uri) > 512 or not uri.isprintable() or \
            any(c.isspace() for c in uri):
        raise refused
    try:
        parts = urlsplit(uri)
        parts.port            # a port that is not a number raises ValueError
    except ValueError:
        raise refused from None
    if parts.scheme not in SCHEMES or parts.fragment or \
            {"command", "netcat"} & set(parse_qs(parts.query)):
        raise refused
    return uri


def check_ratio(value: object, what: str) -> float:
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ratio = 0.0
    if isinstance(value, bool) or not 0.05 <= ratio <= 64:
        raise InvalidSpec(f"{what} {value!r} is not allowed: use a number from 0.05 to 64 "
                          "(1 = no overcommit, 4 = four vCPUs per core)")
    return ratio


class Hosts:
    """`cloud.hosts`: the hosts of this cloud, and where instances go."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider
        self._down: set[str] = set()      # hosts seen down (HOST_DOWN told once)
        # the monitor's sampler sees instances vanish when their host dies: a look at the
        # hosts then tells HOST_DOWN without anyone listing them
        ctx.events.on(INSTANCE_STATE, self._states_changed)

    def _states_changed(self, names: list[str]) -> None:
        if not self.records():
            return
        home = self.provider.home_host
        recorded = {r.name: r.spec.get("host") for r in self.ctx.inventory.all("instance")}
        if any(recorded.get(n) not in (None, home) for n in names):
            self.infos()

    # ----- records ------------------------------------------------------------------------
    def records(self):
        return self.ctx.inventory.all(KIND)

    def attach(self) -> list[str]:
        """Connect the recorded hosts (when the cloud opens) and tell the provider where
        the recorded instances are; returns the hosts that did not answer."""
        if not self.provider.has("hosts"):
            return []
        down = []
        for r in self.records():
            try:
                self.provider.add_host(r.name, r.spec["uri"], r.spec.get("address") or None,
                                       known=True)
            except CloudError:
                down.append(r.name)
        self.provider.know_placements({r.name: r.spec["host"]
                                       for r in self.ctx.inventory.all("instance")
                                       if r.spec.get("host")})
        return down

    def _ratios(self) -> dict[str, dict]:
        return {r.name: r.spec for r in self.records()}

    # ----- the verbs ----------------------------------------------------------------------
    def add(self, name: str, uri: str, *, cpu_ratio: float = CPU_RATIO,
            ram_ratio: float = RAM_RATIO, address: str | None = None) -> HostInfo:
        """Join host `name` at libvirt `uri` to this cloud (or, with the cloud's own URI,
        name the home host and set its ratios). Again with the same name and URI: new
        ratios or address, and a drained host takes instances again."""
        check_name(name, "host name")
        self.provider.require("hosts")
        check_uri(uri)
        spec = {"uri": uri, "cpu_ratio": check_ratio(cpu_ratio, "--cpu-ratio"),
                "ram_ratio": check_ratio(ram_ratio, "--ram-ratio"), "address": address or "",
                "enabled": True}
        with self.ctx.inventory.operation("add", KIND, name, host_uri=uri,
                                          cpu_ratio=spec["cpu_ratio"],
                                          ram_ratio=spec["ram_ratio"], address=address or ""):
            info = self.provider.add_host(name, uri, address)
            old = self.ctx.inventory.get(KIND, name)
            if old is not None:
                spec["fence"] = old.spec.get("fence", [])
            self.ctx.inventory.put(KIND, name, state="active", spec=spec)
        return info

    def infos(self) -> list[HostInfo]:
        """Every host now; a host newly down or back is acted on (see the module)."""
        infos = self.provider.host_infos()
        for info in infos:
            if not info.up and info.name not in self._down:
                self._down.add(info.name)
                self.ctx.events.emit(HOST_DOWN, host=info.name, lost=self.lost_on(info.name))
            elif info.up and info.name in self._down:
                self._down.discard(info.name)
                self.fence(info)
                self.ctx.events.emit(HOST_UP, host=info.name)
        return infos

    def check(self) -> list[HostInfo]:
        """`infos`, for a caller that only wants what follows (a monitor tick)."""
        return self.infos()

    def table(self) -> Table:
        """What `%cloud host list` shows."""
        ratios = self._ratios()
        rows = []
        for h in self.infos():
            spec = ratios.get(h.name, {})
            cpu, ram = spec.get("cpu_ratio", CPU_RATIO), spec.get("ram_ratio", RAM_RATIO)
            state = h.state if spec.get("enabled", True) else f"{h.state}, drained"
            if not h.up:
                rows.append((h.name, h.uri, f"down ({h.reason[:60]})", "-", "-", "-",
                             len(self.lost_on(h.name)), "-"))
                continue
            load = HostLoad(h.name, h.vcpus, h.memory, h.used_vcpus, h.used_memory, cpu, ram)
            rows.append((h.name + (" (home)" if h.home else ""), h.uri, state,
                         f"{h.used_vcpus}/{load.cap_vcpus} ({h.vcpus} x {cpu:g})",
                         f"{mib(h.used_memory)}/{mib(load.cap_memory)}",
                         f"{max(load.free_vcpus, 0)} vCPUs, {mib(load.free_memory)}",
                         len(h.instances), h.accelerator))
        return Table(["host", "uri", "state", "vCPUs", "memory", "free", "instances",
                      "accelerator"], rows, "hosts")

    def remove(self, name: str) -> None:
        """Forget host `name`; refused while it holds instances (drain it first)."""
        check_name(name, "host name")
        info = next((h for h in self.infos() if h.name == name), None)
        if info is None:
            raise NotFound(f"host {name!r} is not a host of this cloud (`%cloud host list`)")
        held = sorted(set(info.instances) | set(self.lost_on(name)))
        if held:
            raise CloudError(f"host {name} holds instance{'s' if len(held) > 1 else ''} "
                             f"{', '.join(held)}: `%cloud host drain {name}` moves them off, "
                             "or delete them")
        with self.ctx.inventory.operation("remove", KIND, name):
            self.provider.remove_host(name)
            self.ctx.inventory.remove(KIND, name)

    def drain(self, name: str, progress=None) -> list[str]:
        """Move every instance off host `name` (live) and let it take no new one (until
        `add` again). Returns what moved where; a failure names what stayed."""
        check_name(name, "host name")
        info = next((h for h in self.infos() if h.name == name), None)
        if info is None:
            raise NotFound(f"host {name!r} is not a host of this cloud (`%cloud host list`)")
        self._set_enabled(name, info.uri, False)
        moved = []
        with self.ctx.inventory.operation("drain", KIND, name, instances=list(info.instances)) \
                as op:
            for inst in info.instances:
                try:
                    result = self.migrate(inst, progress=progress)
                except Interrupted:
                    raise
                except CloudError as exc:
                    raise CloudError(f"drain of {name} stopped at {inst}: {exc} (moved: "
                                     f"{', '.join(moved) or 'none'})") from None
                moved.append(f"{inst} -> {result['to']}")
            op.detail = ", ".join(moved)
        return moved

    def _set_enabled(self, name: str, uri: str, enabled: bool) -> None:
        def change(current):
            spec = dict(current.spec) if current else {"uri": uri, "cpu_ratio": CPU_RATIO,
                                                       "ram_ratio": RAM_RATIO, "address": ""}
            return {**spec, "enabled": enabled}
        self.ctx.inventory.update(KIND, name, change, state="active")

    # ----- placement ----------------------------------------------------------------------
    def place(self, name: str, flavor, group: str | None = None, pin: str | None = None,
              *, image: str = "", networks: tuple[str, ...] = ()) -> str | None:
        """The host for new instance `name` of `flavor`, claimed in its record (state
        'placing'); None where the cloud places nothing (one host, or an engine that
        places itself)."""
        if not self.provider.has("hosts"):
            if pin:
                self.provider.require("hosts")
            return None
        if not self.records():     # one host, as ever: no capacity check
            if pin and pin != self.provider.home_host:
                raise NotFound(f"host {pin!r} is not a host of this cloud (it has one, "
                               f"{self.provider.home_host}; `%cloud host add NAME URI`)")
            return None
        infos = self.infos()
        chosen: list[str] = []

        def claim(current):
            loads = self.loads(infos, group, exclude_name=name)
            chosen.append(place(name, flavor.vcpus, flavor.memory, loads, pin=pin))
            return {"image": image, "flavor": flavor.name, "networks": list(networks),
                    "host": chosen[0], "group": group, "placing": time.time()}
        self.ctx.inventory.update("instance", name, claim, state="placing")
        return chosen[0]

    def claim(self, spec, flavor, op: int, undo) -> str | None:
        """`place` for a create (`spec`, operation `op`): the host claimed, its record
        taken back by `undo`; a refusal finishes `op` as failed, saying why."""
        try:
            placed = self.place(spec.name, flavor, spec.group, spec.host, image=spec.image,
                                networks=spec.networks)
        except BaseException as exc:
            self.ctx.inventory.finish(op, "failed", str(exc))
            raise
        if placed is not None:
            undo.add(lambda: self.ctx.inventory.remove("instance", spec.name))
        return placed

    @staticmethod
    def fields(host: str | None, group: str | None) -> dict:
        """What an instance's record says of its placement (nothing on one host)."""
        return {**({"host": host} if host else {}), **({"group": group} if group else {})}

    def loads(self, infos: list[HostInfo], group: str | None = None,
              exclude_name: str | None = None) -> list[HostLoad]:
        """Each host as placement sees it: live use plus the claims of records not yet
        in libvirt (read in the caller's transaction, if it has one)."""
        ratios = self._ratios()
        rows = [r for r in self.ctx.inventory.all("instance") if r.name != exclude_name]
        live = {n for h in infos for n in h.instances}
        out = []
        for h in infos:
            spec = ratios.get(h.name, {})
            vcpus = memory = members = 0
            for r in rows:
                if r.spec.get("host") != h.name:
                    continue
                if group and r.spec.get("group") == group:
                    members += 1
                if r.name not in live and r.state in PENDING:
                    size = self._size(r.spec.get("flavor", ""))
                    vcpus, memory = vcpus + size[0], memory + size[1]
            out.append(HostLoad(h.name, h.vcpus, h.memory, h.used_vcpus + vcpus,
                                h.used_memory + memory, spec.get("cpu_ratio", CPU_RATIO),
                                spec.get("ram_ratio", RAM_RATIO), h.up,
                                spec.get("enabled", True), members))
        return out

    def _size(self, flavor: str) -> tuple[int, int]:
        try:
            f = self.provider.flavor(flavor)
        except CloudError:
            return 0, 0
        return f.vcpus, f.memory

    # ----- migration ----------------------------------------------------------------------
    def migrate(self, name: str, to: str | None = None, progress=None,
                cancelled=None) -> dict:
        """Move running instance `name` live to host `to` (placement picks one when not
        given). Ctrl-C aborts: it stays, running, where it was (`Interrupted` says so)."""
        check_name(name, "instance name")
        self.provider.require("migrate")
        if to is not None:
            check_name(to, "host name")
        source = self.provider.host_of(name)
        if not source:
            raise NotFound(f"instance {name!r} does not exist")
        self.provider.metadata(name)    # NotManaged: never moves a domain without our mark
        if to is None:
            record = self.ctx.inventory.get("instance", name)
            flavor = self.provider.flavor((record.spec if record else {}).get("flavor") or
                                          self.provider.metadata(name).get("flavor", ""))
            infos = self.infos()
            to = place(name, flavor.vcpus, flavor.memory,
                       self.loads(infos, (record.spec if record else {}).get("group"),
                                  exclude_name=name), exclude=(source,))
        with self.ctx.inventory.operation("migrate", "instance", name, source=source,
                                          to=to) as op:
            try:
                result = self.provider.migrate(name, to, progress, cancelled)
            except KeyboardInterrupt:
                op.detail = "aborted"
                raise Interrupted(f"interrupted: the migration of {name} was aborted; it "
                                  f"still runs on {source}") from None
            self.ctx.inventory.update("instance", name,
                                      lambda r: {**r.spec, "host": to} if r else None)
            op.detail = f"{source} -> {to} in {result['seconds']:.1f} s" + (
                f", downtime {result['downtime_ms']} ms" if result.get("downtime_ms")
                is not None else "")
        return result

    # ----- lost instances -------------------------------------------------------------------
    def down_hosts(self) -> set[str]:
        return {h.name for h in self.provider.host_infos() if not h.up}

    def lost_on(self, host: str) -> list[str]:
        """Instances recorded on `host` (lost while it is down)."""
        return sorted(r.name for r in self.ctx.inventory.all("instance")
                      if r.spec.get("host") == host)

    def forget_if_lost(self, name: str) -> None:
        """Let go of instance `name` if it is lost (it is being made again)."""
        if self.is_lost(name):
            self.forget_lost(name)

    def is_lost(self, name: str) -> bool:
        """Whether instance `name` is recorded on a host that is down."""
        record = self.ctx.inventory.get("instance", name) if self.records() else None
        return bool(record and record.spec.get("host") in self.down_hosts())

    def lost(self) -> dict[str, str]:
        """instance -> host, for every instance whose host is down."""
        down = self.down_hosts() if self.records() else set()
        return {r.name: r.spec["host"] for r in self.ctx.inventory.all("instance")
                if r.spec.get("host") in down}

    def instance_table(self, rows: list[tuple]) -> Table:
        """`%cloud instance list` from (name, state, ip, flavor, image) rows: as ever on
        one host; with several, each row says its host, and lost instances are listed."""
        if not self.records():
            return Table(["name", "state", "ip", "flavor", "image"], rows, "instances")
        out = [(self.provider.host_of(r[0]), *r) for r in rows]
        for name, host in self.lost().items():
            record = self.ctx.inventory.get("instance", name)
            out.append((host, name, "lost", "", record.spec.get("flavor", ""),
                        record.spec.get("image", "")))
        return Table(["host", "name", "state", "ip", "flavor", "image"], sorted(out),
                     "instances")

    def delete_lost(self, name: str) -> None:
        """Delete instance `name`, lost with its host: its record and addresses go now,
        its domain when the host answers again."""
        with self.ctx.inventory.operation("delete", "instance", name, lost=True) as op:
            op.detail = "; ".join(self.forget_lost(name))
            self.ctx.events.emit(INSTANCE_DELETED, name=name, meta={})

    def forget_lost(self, name: str) -> list[str]:
        """Let go of lost instance `name` (a replacement, or a delete): its addresses go,
        its record goes, and its host removes its copy when it answers again."""
        record = self.ctx.inventory.get("instance", name)
        if record is None:
            return []
        host = record.spec.get("host", "")
        done = self.provider.forget_lost(name, tuple(record.spec.get("networks", [])))
        self.ctx.inventory.update(KIND, host, lambda r: {
            **r.spec, "fence": sorted(set(r.spec.get("fence", [])) | {name})} if r else None)
        self.ctx.inventory.remove("instance", name)
        return done

    def fence(self, info: HostInfo) -> list[str]:
        """Host `info` answers again: remove its copies of instances made again elsewhere
        (or deleted) while it was down."""
        record = self.ctx.inventory.get(KIND, info.name)
        rows = {r.name: r for r in self.ctx.inventory.all("instance")}
        stale = set(record.spec.get("fence", []) if record else [])
        stale |= {n for n in info.instances
                  if n in rows and rows[n].spec.get("host") not in (None, info.name)}
        done = []
        for name in sorted(stale & set(info.instances)):
            with self.ctx.inventory.operation("fence", "instance", name, host=info.name) as op:
                gone = self.provider.fence(name, info.name)
                op.detail = ", ".join(gone)
                done += gone
        if record is not None and record.spec.get("fence"):
            self.ctx.inventory.update(KIND, info.name,
                                      lambda r: {**r.spec, "fence": []} if r else None)
        return done
