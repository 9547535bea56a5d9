"""Instance pools: `cloud.ipools` (create, scale, list, delete), N instances from one
template, members NAME-1..NAME-N (the stack `count` convention).

A pool is an inventory resource of kind "ipool", spec {"members": [names], "template":
{image, flavor, network, user_data, secgroups}, "lb": balancer or None, "policy":
autoscale policy or None, "resized": when its size last changed}. Members join the
pool's load balancer when they are up and leave it before they are deleted. A pool with
a policy is resized by the autoscaler (autoscale.py) on the monitor's ticks. Members are
spread over the cloud's hosts (one placement group per pool); members lost with a host
that stopped answering are made again on the hosts that answer (`heal`, on HOST_DOWN).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, NotFound
from nbcloud.core.events import HOST_DOWN, POOLS_CHANGED
from nbcloud.core.handle import Handle
from nbcloud.core.scaling import Policy
from nbcloud.core.spec import POOL_MAX_SIZE, InvalidSpec, check_count, check_name
from nbcloud.providers.types import USER_NETWORK

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services

KIND = "ipool"
MAX_SIZE = POOL_MAX_SIZE
MAX_PARALLEL = 3


class InstancePool(Handle):
    """A handle on one pool; `members` and `size` read the inventory."""

    noun = "instance pool"

    @property
    def spec(self) -> dict:
        return self.service.record(self.name).spec

    @property
    def members(self) -> list[str]:
        return list(self.spec["members"])

    @property
    def size(self) -> int:
        return len(self.spec["members"])

    @property
    def policy(self) -> Policy | None:
        return Policy.from_json(self.spec.get("policy"))

    def scale(self, size: int) -> InstancePool:
        return self.service.scale(self.name, size)

    def rows(self) -> dict[str, object]:
        s = self.spec
        t = s["template"]
        policy = Policy.from_json(s.get("policy"))
        return {"size": str(len(s["members"])), "members": ", ".join(s["members"]) or "-",
                "template": f"{t['image']} {t['flavor']} on {t['network']}",
                "security groups": ", ".join(t.get("secgroups", [])) or "-",
                "load balancer": s.get("lb") or "-",
                "autoscale": policy.describe() if policy else "by hand"}


class InstancePools:
    """`cloud.ipools`: pools of like instances, scaled by hand or by a metric rule."""

    def __init__(self, cloud: Services):
        self.cloud = cloud
        self._locks: dict[str, threading.Lock] = {}
        self.healing: threading.Thread | None = None
        cloud.ctx.events.on(HOST_DOWN, self._host_down)

    # ----- reading --------------------------------------------------------------------
    def records(self):
        return self.cloud.inventory.all(KIND)

    def record(self, name: str):
        """Pool `name`'s inventory record; NotFound in one line."""
        check_name(name, "pool name")
        for r in self.records():
            if r.name == name:
                return r
        raise NotFound(f"instance pool {name!r} does not exist (see `%cloud ipool list`)")

    def get(self, name: str) -> InstancePool:
        self.record(name)
        self._autoscale()
        return InstancePool(self, name)

    __getitem__ = get

    def list(self) -> list[InstancePool]:
        return [InstancePool(self, r.name) for r in self.records()]

    def table(self) -> Table:
        self._autoscale()
        rows = []
        for r in self.records():
            t, policy = r.spec["template"], Policy.from_json(r.spec.get("policy"))
            rows.append((r.name, len(r.spec["members"]), ", ".join(r.spec["members"]) or "-",
                         f"{t['image']} {t['flavor']} on {t['network']}",
                         r.spec.get("lb") or "-", policy.describe() if policy else "-"))
        return Table(["pool", "size", "members", "template", "lb", "autoscale"], rows,
                     "instance pools")

    # ----- writes ---------------------------------------------------------------------
    def create(self, name: str, image: str = "tiny", flavor: str = "t.nano",
               network: str | None = None, size: int = 1, *, user_data: str | None = None,
               secgroups: tuple[str, ...] | list[str] = (), lb: str | None = None,
               scale_out: str | None = None, scale_in: str | None = None,
               min_size: int | None = None, max_size: int | None = None,
               stack: str = "adhoc") -> InstancePool:
        """Create pool `name` of `size` instances NAME-1..NAME-N; refused, with nothing
        changed, on any bad input (a bad rule, --min above --max, an unknown balancer)."""
        check_name(name, "pool name")
        n = check_count(size, "size", maximum=MAX_SIZE)
        check_name(image, "image name")
        self.cloud.provider.flavor(flavor)
        network = network or self.cloud.provider.default_network
        check_name(network, "network name")
        policy = Policy.parse(scale_out, scale_in, min_size, max_size)
        if policy is not None and not policy.min <= n <= policy.max:
            raise InvalidSpec(f"size {n} is outside --min {policy.min} .. --max "
                              f"{policy.max}: start the pool within its bounds")
        if any(r.name == name for r in self.records()):
            raise AlreadyExists(f"instance pool {name!r} exists already")
        if network != USER_NETWORK:  # user-mode networking has no libvirt network
            self.cloud.networks.get(network)
        if lb is not None:
            balancer = self.cloud.lbs.record(lb)
            if balancer.spec["network"] != network:
                raise InvalidSpec(f"load balancer {lb!r} is on network "
                                  f"{balancer.spec['network']!r}, the pool on {network!r}: "
                                  "put them on one network")
        for g in secgroups:
            self.cloud.secgroups.get(g)
        self.cloud.images.get(image)
        names = [f"{name}-{i}" for i in range(1, n + 1)]
        for member in names:
            if self.cloud.provider.exists(member):
                raise AlreadyExists(f"instance {member!r} exists already: a pool's members "
                                    f"are called {name}-1..{name}-N; pick another name")
        spec = {"members": [], "lb": lb, "resized": 0.0,
                "policy": policy.to_json() if policy else None,
                "template": {"image": image, "flavor": flavor, "network": network,
                             "user_data": user_data, "secgroups": list(secgroups)}}
        cloud = self.cloud
        with cloud.inventory.operation("create", KIND, name, size=n, image=image,
                                       flavor=flavor, network=network, lb=lb,
                                       policy=spec["policy"], stack=stack):
            cloud.inventory.put(KIND, name, state="creating", spec=spec,
                                stack=stack)
            try:
                self._grow(name, names)
            except BaseException:
                self._delete_members(name, self.record(name).spec["members"])
                cloud.inventory.remove(KIND, name)
                raise
            cloud.inventory.set_state(KIND, name, "active")
        self._autoscale()
        return InstancePool(self, name)

    def _lock(self, name: str) -> threading.Lock:
        return self._locks.setdefault(name, threading.Lock())

    def _save(self, name: str, **changes) -> None:
        self.cloud.inventory.update(KIND, name, lambda r: {**r.spec, **changes} if r else None)

    def claim_resize(self, name: str, seen: float) -> bool:
        """Take pool `name`'s next resize: True unless it was resized after `seen` (its
        `resized` when read), e.g. by an autoscaler in another process, or is not active
        (still being made, or being deleted). One transaction."""
        now = time.time()

        def change(r):
            if r is None or r.state != "active" or r.spec.get("resized", 0.0) != seen:
                return None
            return {**r.spec, "resized": now}
        r = self.cloud.inventory.update(KIND, name, change)
        return r is not None and r.spec.get("resized") == now

    def _members_change(self, name: str, *, add=(), remove=()) -> None:
        """Add and remove members of pool `name` in one read-modify-write of its record
        (relative to what it holds then: another thread or process may have changed it
        since this one read it)."""
        def edit(r):
            if r is None:
                return None
            kept = [m for m in r.spec["members"] if m not in remove]
            return {**r.spec, "members": kept + [m for m in add if m not in kept],
                    "resized": time.time()}
        self.cloud.inventory.update(KIND, name, edit)

    def mark_resized(self, name: str) -> None:
        """Record that pool `name` changed size now (its rules wait a whole window)."""
        self._save(name, resized=time.time())

    def _grow(self, name: str, names: list[str]) -> None:
        """Create members `names` from the template, record them, add them to the lb."""
        cloud = self.cloud
        r = self.record(name)
        t = r.spec["template"]

        def one(member: str) -> str:
            cloud.instances.create(member, t["image"], t["flavor"], t["network"],
                                   user_data=t.get("user_data"), stack=r.stack, group=name)
            for group in t.get("secgroups", []):
                cloud.secgroups.attach(group, member)
            return member

        made, failure = [], None
        with ThreadPoolExecutor(max_workers=min(len(names), MAX_PARALLEL) or 1) as pool:
            for future in [pool.submit(one, m) for m in names]:
                try:
                    made.append(future.result())
                except BaseException as exc:  # keep the ones that came up; report
                    failure = failure or exc
        self._members_change(name, add=[m for m in names if m in made])
        if made and r.spec.get("lb"):
            cloud.lbs.add_members(r.spec["lb"], made)
        if failure is not None:
            raise failure

    def _delete_members(self, name: str, names: list[str]) -> None:
        """Take `names` out of the balancer, then delete them."""
        cloud = self.cloud
        r = self.record(name)
        lb = r.spec.get("lb")
        if lb and any(b.name == lb for b in cloud.lbs.list()):
            cloud.lbs.remove_members(lb, names, missing_ok=True)
        monitor = cloud.started_monitor
        if monitor is not None:   # no more samples of members that are going
            monitor.unwatch(*names)
        for member in names:
            if cloud.provider.exists(member):
                cloud.instances.delete(member)
        self._members_change(name, remove=names)

    def scale(self, name: str, size: int, *, reason: str = "by hand") -> InstancePool:
        """Grow to or shrink to `size` members: new ones take the lowest free NAME-i,
        the highest-numbered go first. An autoscaled pool stays within --min/--max."""
        n = check_count(size, "size", maximum=MAX_SIZE)
        r = self.record(name)
        policy = Policy.from_json(r.spec.get("policy"))
        if policy is not None and not policy.min <= n <= policy.max:
            raise InvalidSpec(f"size {n} is outside the pool's --min {policy.min} .. --max "
                              f"{policy.max}")
        cloud = self.cloud
        with self._lock(name):
            members = self.record(name).spec["members"]
            before = len(members)
            with cloud.inventory.operation("scale", KIND, name, size_from=before,
                                           size_to=n, reason=reason) as op:
                if n > before:
                    taken = set(members)
                    free = (f"{name}-{i}" for i in range(1, MAX_SIZE * 2)
                            if f"{name}-{i}" not in taken)
                    self._grow(name, [next(free) for _ in range(n - before)])
                elif n < before:
                    order = sorted(members, key=lambda m: int(m.rsplit("-", 1)[1]))
                    self._delete_members(name, order[n:])
                op.detail = f"{before} -> {n} ({reason})"
        self._autoscale()
        return InstancePool(self, name)

    def delete(self, name: str) -> None:
        """Delete the pool's members (leaving its balancer, emptied of them) and the pool."""
        r = self.record(name)
        cloud = self.cloud
        with self._lock(name):
            with cloud.inventory.operation("delete", KIND, name,
                                           members=r.spec["members"]):
                cloud.inventory.set_state(KIND, name, "deleting")   # no autoscaler regrows it
                try:
                    self._delete_members(name, r.spec["members"])
                except BaseException:
                    cloud.inventory.set_state(KIND, name, "active")
                    raise
                cloud.inventory.remove(KIND, name)
        self._autoscale()

    def set_policy(self, name: str, policy: dict | None, *, stack: str | None = None) -> None:
        """Give pool `name` autoscale rule `policy` (Policy.to_json()), or none: sized by
        hand from then on."""
        r = self.record(name)
        cloud = self.cloud
        with self._lock(name):
            with cloud.inventory.operation("update", KIND, name, policy=policy,
                                           stack=stack or r.stack):
                self._save(name, policy=policy)
        self._autoscale()

    # ----- autoscaling ----------------------------------------------------------------
    def _autoscale(self) -> None:
        """Tell the autoscaler (workflows/autoscaler.py) that pools or policies changed."""
        self.cloud.ctx.events.emit(POOLS_CHANGED)

    # ----- a host that died ---------------------------------------------------------------
    def _host_down(self, host: str, lost: list[str]) -> None:
        """Host `host` stopped answering with members of pools: make them again elsewhere,
        in a thread of their own (the caller may be the monitor's sampler)."""
        if any(set(r.spec["members"]) & set(lost) for r in self.records()):
            self.healing = threading.Thread(target=self.heal, name="nbcloud-heal",
                                            daemon=True)
            self.healing.start()

    def heal(self) -> list[str]:
        """Make every member lost with its host again on the hosts that answer (same
        name, a new address); returns the members made. Each pool's heal is one
        operation in the log."""
        lost = self.cloud.hosts.lost()
        made = []
        for r in self.records():
            gone = [m for m in r.spec["members"] if m in lost]
            if not gone:
                continue
            with self._lock(r.name):
                with self.cloud.inventory.operation("heal", KIND, r.name, members=gone,
                                                    hosts=sorted({lost[m] for m in gone})) \
                        as op:
                    for member in gone:
                        self.cloud.hosts.forget_lost(member)
                    self._members_change(r.name, remove=gone)
                    self._grow(r.name, gone)
                    op.detail = ", ".join(f"{m} (was on {lost[m]})" for m in gone)
            made += gone
        return made
