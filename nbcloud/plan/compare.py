"""The comparison: the desired state of a stack vs what the inventory recorded vs what the
provider has -> ordered actions (create / update in place / replace / delete), and drift.

The live state is read in one pass per kind of object (workflows/stacks.py `read_live`); `compute` is pure, so
a plan of a large stack costs one read of libvirt and one of the inventory.
"""
from __future__ import annotations

import re
from types import SimpleNamespace
from typing import TYPE_CHECKING

from nbcloud.core.flavors import get_flavor
from nbcloud.core.spec import USER_NETWORK, InvalidSpec, format_size
from nbcloud.core.stackfile import Stack
from nbcloud.plan.ipool import check_pool, compare_pool, pool_members
from nbcloud.plan.model import KINDS, Action, LiveState, Plan, user_data_digest  # noqa: F401
from nbcloud.plan.runtime import (
    BALANCER_DOWN,
    INACTIVE,
    MOVE,
    STOPPED,
    balancer_down,
    inactive,
    runtime_drift,
    stopped,
)

if TYPE_CHECKING:
    from nbcloud.inventory import Resource

# ----- the comparison -----------------------------------------------------------------------
def _refuse_foreign(kind: str, name: str, stack: str, recorded: dict, live: LiveState) -> None:
    """A same-name object this stack did not make is never adopted or touched."""
    other = recorded.get((kind, name))
    if other is not None and other.spec.get("recovered") and other.stack == "adhoc":
        return  # rebuilt from libvirt without its stack: the stack declaring it claims it
    if other is not None and other.stack != stack:
        raise InvalidSpec(f"{kind} {name!r} belongs to stack {other.stack!r}: rename it in "
                          "this cell or destroy it there first")
    if kind == "instance":
        if name in live.foreign_domains:
            raise InvalidSpec(f"instance {name!r}: a domain of that name exists without "
                              "nbcloud's mark, and nbcloud never touches it: rename yours")
        meta = live.domains.get(name, {}).get("meta")
        if meta is not None and other is None and meta.get("stack") != stack:
            raise InvalidSpec(f"instance {name!r} exists already outside stack {stack!r}: "
                              "rename it in this cell or delete it first")
    elif kind == "network" and name in live.networks and other is None:
        why = "" if live.networks[name]["managed"] else " (not made by nbcloud)"
        raise InvalidSpec(f"network {name!r} exists already outside stack {stack!r}{why}: "
                          "rename it in this cell")
    elif kind == "volume" and name in live.volumes and other is None:
        raise InvalidSpec(f"volume {name!r} exists already outside stack {stack!r}: rename "
                          "it in this cell")


def _describe(kind: str, want) -> str:
    if kind == "network":
        return f"{want.network} {want.mode}"
    if kind == "volume":
        return f"{format_size(want.capacity)} {want.tier}"
    if kind == "loadbalancer":
        return f"{want.algorithm} on {want.network}:{want.port} over {','.join(want.members)}"
    if kind == "secgroup":
        return f"{len(want.rules)} rules: {'; '.join(want.rules) or 'ingress denied'}"
    if kind == "ipool":
        return f"{want.size} x {want.image} {want.flavor} on {want.network}"
    spec, decl = want
    vols = f" with {','.join(decl.volumes)}" if decl.volumes else ""
    return f"{spec.image} {spec.flavor} on {','.join(spec.networks)}{vols}"


_CUSTOM = re.compile(r"custom-(\d+)c-(\d+)m")


def _flavor_size(name: str) -> tuple[int, int] | None:
    """(vcpus, memory) of a catalogue flavor or of a custom one's name."""
    m = _CUSTOM.fullmatch(name)
    if m:
        return int(m.group(1)), int(m.group(2)) << 20
    try:
        flavor = get_flavor(name)
    except InvalidSpec:
        return None
    return flavor.vcpus, flavor.memory


def size_drift(entry: dict) -> str:
    """'' if a domain's vCPUs and memory match the flavor in its metadata, else what differs."""
    name = entry["meta"].get("flavor", "")
    size = _flavor_size(name)
    if size is None:
        return ""
    flavor = SimpleNamespace(name=name, vcpus=size[0], memory=size[1])
    out = []
    if entry["memory"] != flavor.memory:
        out.append(f"memory {format_size(entry['memory'])}, flavor {flavor.name} says "
                   f"{format_size(flavor.memory)}")
    if entry["vcpus"] != flavor.vcpus:
        out.append(f"{entry['vcpus']} vCPUs, flavor {flavor.name} says {flavor.vcpus}")
    return "; ".join(out)


def nic_pairs(meta: dict) -> set[tuple[str, str]]:
    """(network, mac) of the NICs nbcloud gave an instance, from its metadata (user-mode
    networking is no libvirt interface, so it is left out)."""
    nets = meta.get("networks", "").split(",")
    macs = meta.get("mac", "").lower().split(",")
    return {(n, m) for n, m in zip(nets, macs) if n and m and n != USER_NETWORK}


def nic_drift(entry: dict) -> str:
    """'' if a domain's NICs are the ones its metadata records, else what differs: NICs
    added, removed or moved to another network (with virsh attach/detach-interface)."""
    if "nics" not in entry or not entry["meta"].get("mac"):
        return ""
    want, have = nic_pairs(entry["meta"]), set(entry["nics"])
    want_by_mac, have_by_mac = {m: n for n, m in want}, {m: n for n, m in have}
    out = []
    for mac in sorted(set(want_by_mac) | set(have_by_mac)):
        was, now = want_by_mac.get(mac), have_by_mac.get(mac)
        if was == now:
            continue
        if was is None:
            out.append(f"NIC {mac} on {now} added")
        elif now is None:
            out.append(f"NIC {mac} on {was} removed")
        else:
            out.append(f"NIC {mac} moved from {was} to {now}")
    return ", ".join(out)


def _compare_instance(spec, decl, entry: dict, record: Resource | None) -> tuple[str, list]:
    meta = entry["meta"]
    replace, update = [], []
    # an adopted domain's image is unknown: the cell's image is not a reason to replace it
    if meta.get("image") != spec.image and not meta.get("adopted"):
        replace.append(f"image {meta.get('image')} -> {spec.image}")
    live_nets = tuple(filter(None, meta.get("networks", "").split(",")))
    if live_nets != spec.networks:
        replace.append(f"networks {','.join(live_nets)} -> {','.join(spec.networks)}")
    if record is not None and "user_data" in record.spec and \
            record.spec["user_data"] != user_data_digest(spec.user_data):
        replace.append("user_data changed")
    if replace:
        return "replace", replace
    if meta.get("flavor") != spec.flavor:
        update.append(f"flavor {meta.get('flavor')} -> {spec.flavor}")
    else:
        drift = size_drift(entry)
        if drift:
            update.append(f"changed behind nbcloud's back: {drift}")
    if spec.host and entry.get("host", spec.host) != spec.host:
        update.append(f"{MOVE}{entry['host']} -> {spec.host} (a live migration)")
    nics = nic_drift(entry)
    if nics:
        update.append(f"NICs changed behind nbcloud's back: {nics}")
    live_vols = sorted(filter(None, meta.get("volumes", "").split(",")))
    if live_vols != sorted(decl.volumes):
        update.append(f"volumes [{','.join(live_vols)}] -> [{','.join(sorted(decl.volumes))}]")
    return ("update" if update else ""), update


def lb_members(decl, stack: Stack, live: LiveState) -> list[str]:
    """The instances balancer `decl`'s member patterns name: the stack's own on its network
    and the live ones there. InvalidSpec if a pattern names none."""
    import fnmatch
    on_net = {n for n, (spec, _d) in stack.members().items() if decl.network in spec.networks}
    on_net |= {n for n, e in live.domains.items()
               if decl.network in e["meta"].get("networks", "").split(",")}
    out: list[str] = []
    for pattern in decl.members:
        found = sorted(n for n in on_net if fnmatch.fnmatchcase(n, pattern))
        if not found:
            raise InvalidSpec(f"loadbalancer.{decl.name}.members: {pattern!r} names no "
                              f"instance on network {decl.network!r}: a member must have a "
                              "NIC on the balancer's network")
        out += [n for n in found if n not in out]
    return out


def _compare_lb(want, have: dict, members: list[str]) -> tuple[str, list]:
    changes = []
    if have["network"] != want.network:
        changes.append(f"network {have['network']} -> {want.network}")
    if have["port"] != want.port:
        changes.append(f"port {have['port']} -> {want.port}")
    if changes:
        return "replace", changes
    if have["algorithm"] != want.algorithm:
        changes.append(f"algorithm {have['algorithm']} -> {want.algorithm}")
    if (have.get("member_port") or have["port"]) != (want.member_port or want.port):
        changes.append(f"member port -> {want.member_port or want.port}")
    if sorted(have["members"]) != sorted(members):
        changes.append(f"members [{','.join(have['members'])}] -> [{','.join(members)}]")
    return ("update" if changes else ""), changes


def sg_members(stack: Stack, group: str) -> list[str]:
    """The stack's instances (counts expanded) that declare security group `group`."""
    return sorted(n for n, (_s, decl) in stack.members().items() if group in decl.secgroups)


def _compare_sg(want, have: dict, stack: Stack) -> tuple[str, list]:
    from nbcloud.core.secrules import Rule, parse_rule_text, rule_text
    changes = []
    recorded = [rule_text(Rule.from_json(r)) for r in have.get("rules", [])]
    wanted = [rule_text(parse_rule_text(r)) for r in want.rules]
    if recorded != wanted:
        changes.append(f"rules [{'; '.join(recorded)}] -> [{'; '.join(wanted)}]")
    ours = set(stack.members())
    now = sorted(set(have.get("instances", [])) & ours)
    members = sg_members(stack, want.name)
    if now != members:
        changes.append(f"members [{','.join(now)}] -> [{','.join(members)}]")
    return ("update" if changes else ""), changes


def compute(stack: Stack, recorded: list[Resource], live: LiveState) -> Plan:
    """The plan that brings `stack` from what is `recorded` and `live` to what it declares."""
    rec = {(r.kind, r.name): r for r in recorded if r.kind in KINDS}
    mine = {key: r for key, r in rec.items() if r.stack == stack.name}
    plan = Plan(stack.name)
    desired: dict[tuple[str, str], object] = {}
    desired.update({("network", n): s for n, s in stack.networks.items()})
    desired.update({("volume", n): s for n, s in stack.volumes.items()})
    desired.update({("instance", n): sd for n, sd in stack.members().items()})
    desired.update({("loadbalancer", n): d for n, d in stack.loadbalancers.items()})
    desired.update({("secgroup", n): d for n, d in stack.secgroups.items()})
    desired.update({("ipool", n): d for n, d in stack.ipools.items()})

    converge: list[Action] = []
    replaced_networks: set[str] = set()
    for (kind, name), want in desired.items():
        _refuse_foreign(kind, name, stack.name, rec, live)
        if kind == "loadbalancer":
            lb_members(want, stack, live)  # a member pattern that names nothing: refused
        record = mine.get((kind, name))
        have = {"network": live.networks, "volume": live.volumes, "instance": live.domains,
                "loadbalancer": live.loadbalancers,
                "secgroup": live.secgroups, "ipool": live.ipools}[kind].get(name)
        if have is None:
            lost_on = live.lost.get(name) if kind == "instance" else None
            gone = (f"lost with host {lost_on}, which is down" if lost_on else
                    "deleted behind nbcloud's back")
            why = (gone,) if record is not None else ()
            why += (_describe(kind, want),)
            if record is not None:
                plan.drift.append(f"{kind} {name} was {gone}" if not lost_on else
                                  f"{kind} {name} is {gone}")
            converge.append(Action("create", kind, name, why, want))
            continue
        op, changes = "", []
        if kind == "network":
            if have["cidr"] != str(want.network):
                changes.append(f"cidr {have['cidr']} -> {want.network}")
            if have["mode"] != want.mode:
                changes.append(f"mode {have['mode']} -> {want.mode}")
            op = "replace" if changes else ""
            if op:
                replaced_networks.add(name)
            elif inactive(have):
                op, changes = "update", [INACTIVE]
                plan.drift.append(f"network {name} {INACTIVE}")
        elif kind == "volume":
            step = have.get("granularity", 1)
            made = -(-want.capacity // step) * step    # the size the provider would make
            if have["tier"] != want.tier:
                op, changes = "replace", [f"tier {have['tier']} -> {want.tier}"]
            elif made < have["size"]:
                raise InvalidSpec(f"volume.{name}.size {want.size} is smaller than its "
                                  f"{format_size(have['size'])}: volumes only grow")
            elif made > have["size"]:
                op, changes = "update", [f"size {format_size(have['size'])} -> "
                                         f"{format_size(want.capacity)}"]
        elif kind == "loadbalancer":  # its pools' members joined it: they stay
            op, changes = _compare_lb(want, have, lb_members(want, stack, live)
                                      + pool_members(live.ipools, name))
            if op != "replace" and balancer_down(name, live):
                op, changes = "update", changes + [BALANCER_DOWN]
                plan.drift.append(f"loadbalancer {name}: {BALANCER_DOWN}")
        elif kind == "secgroup":
            op, changes = _compare_sg(want, have, stack)
        elif kind == "ipool":
            op, changes = compare_pool(want, have)
            plan.drift += [f"instance {m} of ipool {name} " + (
                f"is lost with host {live.lost[m]}, which is down" if m in live.lost else
                "was deleted behind nbcloud's back")
                for m in have["members"] if m not in live.domains]
            down = [m for m in have["members"]
                    if stopped(rec.get(("instance", m)), live.domains.get(m))]
            if down:
                op, changes = op or "update", changes + [f"{','.join(down)} {STOPPED}"]
                plan.drift.append(f"ipool {name}: {','.join(down)} {STOPPED}")
        else:
            op, changes = _compare_instance(want[0], want[1], have, record)
            if op != "replace" and stopped(record, have):
                op, changes = "update", changes + [STOPPED]
            for change in changes:
                if "behind nbcloud's back" in change:
                    plan.drift.append(f"instance {name} {change}")
        if op:
            converge.append(Action(op, kind, name, tuple(changes), want))

    # instances on a replaced network are replaced with it
    for i, a in enumerate(converge):
        if a.kind == "instance" and a.op == "update" and \
                replaced_networks & set(a.desired[0].networks):
            converge[i] = Action("replace", a.kind, a.name,
                                 a.changes + ("its network is replaced",), a.desired)
    for (kind, name), want in desired.items():
        if kind == "instance" and replaced_networks & set(want[0].networks) and \
                not any(a.kind == kind and a.name == name for a in converge):
            converge.append(Action("replace", kind, name, ("its network is replaced",), want))
        if kind == "loadbalancer" and want.network in replaced_networks and \
                not any(a.kind == kind and a.name == name for a in converge) and \
                (kind, name) in mine:
            converge.append(Action("replace", kind, name, ("its network is replaced",), want))

    gone: dict[tuple[str, str], bool] = {}
    for (kind, name), r in mine.items():
        if (kind, name) not in desired:
            here = {"network": live.networks, "volume": live.volumes,
                    "instance": live.domains, "loadbalancer": live.loadbalancers,
                    "secgroup": live.secgroups, "ipool": live.ipools}[kind]
            gone[(kind, name)] = name in here
    for name, entry in live.domains.items():  # ours in libvirt, forgotten by the inventory
        if entry["meta"].get("stack") == stack.name and ("instance", name) not in desired:
            gone.setdefault(("instance", name), True)
    for name in pool_members(live.ipools):  # a pool's members come and go with their pool
        gone.pop(("instance", name), None)
    for want in stack.ipools.values():
        check_pool(want, stack, live, set(gone))
    deletes = [Action("delete", k, n, () if alive else ("already gone",), live=alive)
               for (k, n), alive in gone.items()]
    order = {k: i for i, k in enumerate(KINDS)}
    deletes.sort(key=lambda a: (-order[a.kind], a.name))
    converge.sort(key=lambda a: (order[a.kind], a.name))
    plan.actions = deletes + converge
    return plan


def drift(recorded: list[Resource], live: LiveState) -> list[tuple[str, str, str, str]]:
    """(kind, name, stack, what) for every recorded resource libvirt disagrees with (gone,
    changed, or not running: runtime.py), and every object nbcloud did not make (listed,
    never touched)."""
    out = []
    where = {"network": live.networks, "volume": live.volumes, "instance": live.domains}
    for r in recorded:
        if r.kind not in where:
            continue
        entry = where[r.kind].get(r.name)
        if entry is None:
            out.append((r.kind, r.name, r.stack, "deleted behind nbcloud's back"))
        elif r.kind == "instance":
            changed = size_drift(entry)
            if changed:
                out.append((r.kind, r.name, r.stack, f"changed behind nbcloud's back: {changed}"))
            nics = nic_drift(entry)
            if nics:
                out.append((r.kind, r.name, r.stack,
                            f"NICs changed behind nbcloud's back: {nics}"))
    out += runtime_drift(recorded, live)
    recorded_names = {(r.kind, r.name) for r in recorded}
    for name in live.foreign_domains:
        out.append(("instance", name, "-", "unmanaged (no nbcloud mark): never touched"))
    for name, info in live.networks.items():
        if not info["managed"] and ("network", name) not in recorded_names:  # not adopted
            out.append(("network", name, "-", "unmanaged (not made by nbcloud): never touched"))
    for name in live.domains:
        if ("instance", name) not in recorded_names:
            out.append(("instance", name, live.domains[name]["meta"].get("stack", "-"),
                        "nbcloud's, but not in this inventory"))
    return out
