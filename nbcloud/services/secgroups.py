"""Security groups: named ingress/egress rules, enforced by the host as libvirt nwfilters.

Each group G compiles to one filter `nbcloud-sg-G`; each instance that is a member of any
group gets a filter `nbcloud-inst-NAME` that references its groups' filters between a
fixed head (established traffic, DHCP and DNS replies) and a fixed tail (drop every other
ingress; egress is open unless one of its groups has egress rules), and every interface
of the instance carries `<filterref filter='nbcloud-inst-NAME'/>`. ARP is not IP, so it
passes untouched.

A rule may name another group as its source: it compiles to one rule per address of that
group's current members, and every group whose rules name G is recompiled when G's
membership changes (libvirt re-applies a redefined filter to all its interfaces at once).

The inventory holds each group as kind "secgroup", spec {"rules": [...], "instances":
[member names], "next_id": n}; libvirt's filters are derived from it and rebuilt by
`sync`.
"""
from __future__ import annotations

import functools
import html
import ipaddress
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.secrules import (  # noqa: F401  (the rule model is re-exported)
    PROTOCOLS,
    Rule,
    make_rule,
    parse_ports,
    parse_rule_text,
    rule_text,
)
from nbcloud.core.spec import check_name
from nbcloud.providers.libvirt.nwfilters import FilterDef, FilterRule

if TYPE_CHECKING:
    from nbcloud.api import Cloud

KIND = "secgroup"
GROUP_PREFIX = "nbcloud-sg-"
INSTANCE_PREFIX = "nbcloud-inst-"


def _remote_matches(rule: Rule, members: dict[str, list[str]]) -> list[dict[str, str]]:
    """The address match attributes of `rule`: one dict per remote network."""
    side = "src" if rule.direction == "ingress" else "dst"
    if rule.group:
        addrs = sorted({ip for ips in members.get(rule.group, {}).values() for ip in ips})
        return [{f"{side}ipaddr": ip, f"{side}ipmask": "32"} for ip in addrs]
    if rule.cidr:
        net = ipaddress.IPv4Network(rule.cidr)
        return [{f"{side}ipaddr": str(net.network_address),
                 f"{side}ipmask": str(net.prefixlen)}]
    return [{}]


def compile_group(name: str, rules: list[Rule],
                  members: dict[str, dict[str, list[str]]]) -> FilterDef:
    """The filter of group `name`. `members` is group -> {instance: [addresses]}."""
    out = []
    for rule in rules:
        base: dict[str, str] = {}
        if rule.ports:
            base["dstportstart"] = str(rule.ports[0])
            base["dstportend"] = str(rule.ports[1])
        for remote in _remote_matches(rule, members):  # type: ignore[arg-type]
            out.append(FilterRule("accept", "in" if rule.direction == "ingress" else "out",
                                  rule.proto, {**base, **remote}, priority=500))
    return FilterDef(GROUP_PREFIX + name, tuple(out))


def compile_instance(name: str, groups: list[str], egress_limited: bool) -> FilterDef:
    """The filter on every interface of instance `name`, a member of `groups`."""
    established = {"state": "ESTABLISHED,RELATED"}
    head = [
        # replies to what either side started (the conntrack state)
        FilterRule("accept", "in", "all", established, priority=100),
        FilterRule("accept", "out", "all", established, priority=100),
        # what an instance needs to work: its DHCP lease (a reply may be broadcast, which
        # conntrack does not tie to the request) and DNS queries, whose replies are
        # ESTABLISHED (a rule for "source port 53" would let anyone in who picks it)
        FilterRule("accept", "in", "udp", {"srcportstart": "67", "dstportstart": "68"},
                   priority=110),
        FilterRule("accept", "out", "udp", {"srcportstart": "68", "dstportstart": "67"},
                   priority=110),
        FilterRule("accept", "out", "udp", {"dstportstart": "53"}, priority=110),
        FilterRule("accept", "out", "tcp", {"dstportstart": "53"}, priority=110),
    ]
    tail = [FilterRule("drop", "in", "all", priority=1000)]
    if egress_limited:
        tail.append(FilterRule("drop", "out", "all", priority=1000))
    else:
        tail.append(FilterRule("accept", "out", "all", priority=900))
    return FilterDef(INSTANCE_PREFIX + name, tuple(head + tail),
                     tuple(GROUP_PREFIX + g for g in groups))


@dataclass
class SecurityGroup:
    """A group as the inventory records it."""
    name: str
    rules: list[Rule]
    instances: list[str]
    next_id: int = 1
    stack: str = "adhoc"

    def spec(self) -> dict:
        return {"rules": [r.to_json() for r in self.rules], "instances": self.instances,
                "next_id": self.next_id}

    def __repr__(self) -> str:
        rules = "; ".join(f"#{r.id} {r.describe()}" for r in self.rules) or "no rules"
        return (f"<SecurityGroup {self.name} instances={','.join(self.instances) or '-'} "
                f"{rules}>")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{r.id}</td><td>{html.escape(r.describe())}</td></tr>"
                       for r in self.rules) or "<tr><td colspan=2>no rules: ingress "\
            "denied</td></tr>"
        members = html.escape(", ".join(self.instances) or "none")
        return (f"<b>security group</b> {html.escape(self.name)} (instances: {members})"
                f"<table><tr><th>id</th><th>rule</th></tr>{rows}</table>")


def _serialized(method):
    """Run a read-modify-write of the groups' records under the collection's lock: an
    instance pool attaches its members from parallel threads, and two unlocked attaches
    each saved the member list they had read, losing the other's member."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class SecurityGroups:
    """`cloud.secgroups`: create, rules, attach, detach, list, delete."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        self._lock = threading.RLock()   # re-entrant: delete_with_members detaches

    # ----- records ----------------------------------------------------------------------
    def _all(self) -> dict[str, SecurityGroup]:
        out = {}
        for res in self.cloud.inventory.resources(self.cloud.uri, KIND):
            out[res.name] = SecurityGroup(res.name,
                                          [Rule.from_json(r) for r in res.spec.get("rules",
                                                                                   [])],
                                          list(res.spec.get("instances", [])),
                                          res.spec.get("next_id", 1), res.stack)
        return out

    def get(self, name: str) -> SecurityGroup:
        check_name(name, "security group name")
        groups = self._all()
        if name not in groups:
            raise NotFound(f"security group {name!r} does not exist (there are: "
                           f"{', '.join(groups) or 'none'})")
        return groups[name]

    def list(self) -> list[SecurityGroup]:
        return list(self._all().values())

    def table(self) -> Table:
        rows = [(g.name, len(g.rules), "; ".join(f"#{r.id} {r.describe()}" for r in g.rules)
                 or "-", ", ".join(g.instances) or "-") for g in self.list()]
        return Table(["name", "rules", "what they allow", "instances"], rows,
                     "security groups")

    def _save(self, group: SecurityGroup) -> None:
        self.cloud.inventory.put(self.cloud.uri, KIND, group.name, state="active",
                                 spec=group.spec(), stack=group.stack)

    def of_instance(self, instance: str) -> list[str]:
        return [g.name for g in self.list() if instance in g.instances]

    # ----- compiling ------------------------------------------------------------------
    def _addresses(self, instance: str) -> list[str]:
        try:
            meta = self.cloud.backend.metadata(instance)
        except CloudError:
            return []
        ips = [p.split("=", 1)[1] for p in meta.get("ips", "").split(",") if "=" in p]
        return ips or ([meta["ip"]] if meta.get("ip") else [])

    def _members(self, groups: dict[str, SecurityGroup]) -> dict[str, dict[str, list[str]]]:
        return {g.name: {i: self._addresses(i) for i in g.instances} for g in groups.values()}

    def _compile(self, names: set[str], groups: dict[str, SecurityGroup]) -> None:
        members = self._members(groups)
        for name in sorted(names):
            self.cloud.backend.define_nwfilter(compile_group(name, groups[name].rules,
                                                             members))

    def _compile_instance(self, instance: str, groups: dict[str, SecurityGroup]) -> None:
        """Define the instance's filter and point its interfaces at it, or, in no group
        any more, take the filter off its interfaces and remove it."""
        backend = self.cloud.backend
        mine = [g for g in groups.values() if instance in g.instances]
        if not mine:
            if backend.exists(instance):
                backend.set_interface_filter(instance, None)
            backend.undefine_nwfilter(INSTANCE_PREFIX + instance)
            return
        limited = any(r.direction == "egress" for g in mine for r in g.rules)
        backend.define_nwfilter(compile_instance(instance, [g.name for g in mine], limited))
        backend.set_interface_filter(instance, INSTANCE_PREFIX + instance)

    @staticmethod
    def _referring(group: str, groups: dict[str, SecurityGroup]) -> set[str]:
        return {g.name for g in groups.values() if any(r.group == group for r in g.rules)}

    # ----- verbs ------------------------------------------------------------------------
    @_serialized
    def create(self, name: str, rules: list[Rule] | None = None,
               stack: str = "adhoc") -> SecurityGroup:
        check_name(name, "security group name")
        if name in self._all():
            raise AlreadyExists(f"security group {name!r} exists already")
        rules = list(rules or [])
        group = SecurityGroup(name, [], [], 1, stack)
        for r in rules:  # ids renumbered 1..n so that a stack's rules keep stable ids
            group.rules.append(Rule(group.next_id, r.direction, r.proto, r.ports, r.cidr,
                                    r.group))
            group.next_id += 1
        groups = {**self._all(), name: group}
        self._check_sources(group, groups)
        with self.cloud.inventory.operation(self.cloud.uri, "create", KIND, name):
            self._compile({name}, groups)
            self._save(group)
        return group

    @staticmethod
    def _check_sources(group: SecurityGroup, groups: dict[str, SecurityGroup]) -> None:
        for r in group.rules:
            if r.group and r.group not in groups:
                raise NotFound(f"source group {r.group!r} does not exist: create it first "
                               f"(`%cloud secgroup create {r.group}`)")

    @_serialized
    def add_rule(self, name: str, **parts) -> Rule:
        """Add a rule (see `make_rule` for the parts); live on every member at once."""
        groups = self._all()
        group = self.get(name)
        rule = make_rule(group.next_id, **parts)
        group.rules.append(rule)
        group.next_id += 1
        groups[name] = group
        self._check_sources(group, groups)
        with self.cloud.inventory.operation(self.cloud.uri, "rule add", KIND, name) as op:
            op.detail = rule.describe()
            self._compile({name}, groups)
            if rule.direction == "egress":  # the members' default egress changes
                for inst in group.instances:
                    self._compile_instance(inst, groups)
            self._save(group)
        return rule

    @_serialized
    def delete_rule(self, name: str, rule_id: int) -> Rule:
        groups = self._all()
        group = self.get(name)
        found = [r for r in group.rules if r.id == int(rule_id)]
        if not found:
            raise NotFound(f"security group {name!r} has no rule {rule_id} (it has: "
                           f"{', '.join(str(r.id) for r in group.rules) or 'none'})")
        group.rules.remove(found[0])
        groups[name] = group
        with self.cloud.inventory.operation(self.cloud.uri, "rule delete", KIND, name) as op:
            op.detail = found[0].describe()
            self._compile({name}, groups)
            if found[0].direction == "egress":
                for inst in group.instances:
                    self._compile_instance(inst, groups)
            self._save(group)
        return found[0]

    @_serialized
    def attach(self, name: str, instance: str) -> SecurityGroup:
        """Make `instance` a member of group `name`: its interfaces are filtered live."""
        check_name(instance, "instance name")
        self.cloud.backend.metadata(instance)  # NotFound / NotManaged
        groups = self._all()
        group = self.get(name)
        if instance in group.instances:
            return group
        group.instances.append(instance)
        groups[name] = group
        with self.cloud.inventory.operation(self.cloud.uri, "attach", KIND, name) as op:
            op.detail = instance
            self._compile(self._referring(name, groups), groups)
            self._compile_instance(instance, groups)
            self._save(group)
        return group

    @_serialized
    def detach(self, name: str, instance: str) -> SecurityGroup:
        check_name(instance, "instance name")
        groups = self._all()
        group = self.get(name)
        if instance not in group.instances:
            raise CloudError(f"instance {instance!r} is not in security group {name!r}")
        group.instances.remove(instance)
        groups[name] = group
        with self.cloud.inventory.operation(self.cloud.uri, "detach", KIND, name) as op:
            op.detail = instance
            self._compile_instance(instance, groups)
            self._compile(self._referring(name, groups), groups)
            self._save(group)
        return group

    @_serialized
    def delete(self, name: str) -> None:
        groups = self._all()
        group = self.get(name)
        if group.instances:
            raise CloudError(f"security group {name!r} is attached to "
                             f"{', '.join(group.instances)}: detach it first")
        users = sorted(self._referring(name, groups) - {name})
        if users:
            raise CloudError(f"security group {name!r} is named by rules of "
                             f"{', '.join(users)}: delete those rules first")
        with self.cloud.inventory.operation(self.cloud.uri, "delete", KIND, name):
            self.cloud.backend.undefine_nwfilter(GROUP_PREFIX + name)
            self.cloud.inventory.remove(self.cloud.uri, KIND, name)

    @_serialized
    def converge(self, name: str, rules: list[Rule], members: list[str],
                 managed: set[str], stack: str) -> None:
        """A stack's group: create it if missing, make its rules `rules` (recompiled only
        if they differ) and its membership among `managed` (the stack's instances)
        `members`; members from outside the stack are left as they are."""
        groups = self._all()
        if name not in groups:
            self.create(name, stack=stack)
            groups = self._all()
        group = groups[name]
        want = [rule_text(r) for r in rules]
        if [rule_text(r) for r in group.rules] != want:
            group.rules = [Rule(i, r.direction, r.proto, r.ports, r.cidr, r.group)
                           for i, r in enumerate(rules, 1)]
            group.next_id = len(rules) + 1
            self._check_sources(group, groups)
            with self.cloud.inventory.operation(self.cloud.uri, "update", KIND, name) as op:
                op.detail = "; ".join(want)
                self._compile({name}, groups)
                for inst in group.instances:
                    self._compile_instance(inst, groups)
                self._save(group)
        for inst in sorted(set(members) - set(group.instances)):
            self.attach(name, inst)
        for inst in sorted((set(group.instances) & managed) - set(members)):
            self.detach(name, inst)

    @_serialized
    def delete_with_members(self, name: str) -> None:
        """Detach every member, then delete the group (still refused while another
        group's rules name it); what a stack does with a group it no longer declares."""
        for inst in list(self.get(name).instances):
            if self.cloud.backend.exists(inst):
                self.detach(name, inst)
            else:
                self.instance_deleted(inst)
        self.delete(name)

    @_serialized
    def instance_deleted(self, instance: str) -> None:
        """Called after instance `instance` is gone: drop it from its groups, remove its
        filter, and recompile the groups whose rules named those groups."""
        groups = self._all()
        changed = [g for g in groups.values() if instance in g.instances]
        for g in changed:
            g.instances.remove(instance)
            self._save(g)
        self.cloud.backend.undefine_nwfilter(INSTANCE_PREFIX + instance)
        refer = set().union(*(self._referring(g.name, groups) for g in changed)) \
            if changed else set()
        self._compile(refer, groups)

    def sync(self) -> None:
        """Rebuild every group's and member's filter from the inventory (after a member's
        address changed, or filters were removed behind nbcloud's back)."""
        groups = self._all()
        self._compile(set(groups), groups)
        for inst in sorted({i for g in groups.values() for i in g.instances}):
            if self.cloud.backend.exists(inst):
                self._compile_instance(inst, groups)
