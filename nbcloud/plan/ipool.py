"""The `ipool:` part of a plan (compare.py): a declared pool vs its inventory record, the
references it makes (network, security groups, balancer) and the member names it takes."""
from __future__ import annotations

from typing import TYPE_CHECKING

from nbcloud.core.scaling import Policy
from nbcloud.core.spec import USER_NETWORK, InvalidSpec

if TYPE_CHECKING:
    from nbcloud.core.stackfile import Stack
    from nbcloud.plan.model import LiveState


def pool_new_names(name: str, members: list[str], size: int) -> list[str]:
    """The members a pool of `members` grows by to reach `size`: the lowest free NAME-i
    (what ipools.scale picks)."""
    free = (f"{name}-{i}" for i in range(1, size + len(members) + 1)
            if f"{name}-{i}" not in members)
    return [next(free) for _ in range(size - len(members))]


def compare_pool(want, have: dict) -> tuple[str, list]:
    """A pool's size and autoscale rule change in place; its template cannot (ipools has
    no way to rebuild members), so a changed one is refused, not silently ignored."""
    was = {**have["template"], "lb": have.get("lb")}
    for key, now in want.template().items():
        if (was.get(key) or None) != (now or None):
            shown = "changed" if key == "user_data" else f"{was.get(key)} -> {now}"
            raise InvalidSpec(f"ipool.{want.name}.{key} {shown}: a pool's template cannot "
                              "change in place: delete the pool (remove it from the cell, "
                              "apply) and declare it again")
    changes = []
    if (have.get("policy") or None) != want.policy:
        words = [p.describe() if p else "by hand" for p in
                 (Policy.from_json(have.get("policy")), Policy.from_json(want.policy))]
        changes.append(f"autoscale {words[0]} -> {words[1]}")
    size = len(have["members"])
    if want.policy is None and size != want.size:
        changes.append(f"size {size} -> {want.size}")
    return ("update" if changes else ""), changes


def check_pool(want, stack: Stack, live: LiveState, going: set) -> None:
    """What a pool names exists, in the stack or already (and is not going away)."""
    where = f"ipool.{want.name}"

    def known(kind: str, name: str, declared, have) -> bool:
        return name in declared or (name in have and (kind, name) not in going)
    if want.network != USER_NETWORK and \
            not known("network", want.network, stack.networks, live.networks):
        raise InvalidSpec(f"{where}.network names {want.network!r}, which is neither in "
                          "the network: section nor an existing network")
    for g in want.secgroups:
        if not known("secgroup", g, stack.secgroups, live.secgroups):
            raise InvalidSpec(f"{where}.secgroup names {g!r}, which is neither in the "
                              "secgroup: section nor an existing security group")
    if want.lb is not None:
        if not known("loadbalancer", want.lb, stack.loadbalancers, live.loadbalancers):
            raise InvalidSpec(f"{where}.lb names {want.lb!r}, which is neither in the "
                              "loadbalancer: section nor an existing load balancer")
        declared = stack.loadbalancers.get(want.lb)
        net = declared.network if declared else live.loadbalancers[want.lb].get("network")
        if net != want.network:
            raise InvalidSpec(f"{where}.lb {want.lb!r} is on network {net!r}, the pool on "
                              f"{want.network!r}: put them on one network")
    members = live.ipools.get(want.name, {}).get("members", [])
    for m in pool_new_names(want.name, members, want.size):
        if m in live.foreign_domains or (m in live.domains and ("instance", m) not in going):
            raise InvalidSpec(f"{where}: instance {m!r} exists already, and a pool's members "
                              f"are called {want.name}-1..{want.name}-N: rename the pool")


def pool_members(pools: dict[str, dict], lb: str | None = None) -> list[str]:
    """The members of every pool in `pools` (name -> recorded spec), or of those in
    balancer `lb` if given."""
    return [m for name, spec in sorted(pools.items())
            if lb is None or spec.get("lb") == lb for m in spec["members"]]
