"""Security groups: named ingress/egress rules, enforced by the provider (on libvirt, as
nwfilters: providers/libvirt/firewall.py).

A rule may name another group as its source: it allows that group's members' current
addresses, and every group whose rules name G is recompiled when G's membership changes.

The inventory holds each group as kind "secgroup", spec {"rules": [...], "instances":
[member names], "next_id": n}; the provider's filters are derived from it and rebuilt by
`sync`.
"""
from __future__ import annotations

import functools
import html
import threading
from dataclasses import dataclass

from nbcloud.context import Context
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.events import INSTANCE_DELETED
from nbcloud.core.secrules import (  # noqa: F401  (the rule model is re-exported)
    PROTOCOLS,
    Rule,
    make_rule,
    parse_ports,
    parse_rule_text,
    rule_text,
)
from nbcloud.core.spec import check_name

KIND = "secgroup"


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

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider
        self._lock = threading.RLock()   # re-entrant: delete_with_members detaches
        ctx.events.on(INSTANCE_DELETED, lambda name, meta: self.instance_deleted(name))

    # ----- records ----------------------------------------------------------------------
    def _all(self) -> dict[str, SecurityGroup]:
        out = {}
        for res in self.ctx.inventory.all(KIND):
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
        self.ctx.inventory.put(KIND, group.name, state="active", spec=group.spec(),
                               stack=group.stack)

    def of_instance(self, instance: str) -> list[str]:
        return [g.name for g in self.list() if instance in g.instances]

    # ----- compiling ------------------------------------------------------------------
    def _addresses(self, instance: str) -> list[str]:
        try:
            meta = self.provider.metadata(instance)
        except CloudError:
            return []
        ips = [p.split("=", 1)[1] for p in meta.get("ips", "").split(",") if "=" in p]
        return ips or ([meta["ip"]] if meta.get("ip") else [])

    def _members(self, groups: dict[str, SecurityGroup]) -> dict[str, dict[str, list[str]]]:
        return {g.name: {i: self._addresses(i) for i in g.instances} for g in groups.values()}

    def _compile(self, names: set[str], groups: dict[str, SecurityGroup]) -> None:
        members = self._members(groups)
        for name in sorted(names):
            self.provider.apply_group(name, groups[name].rules, members)

    def _compile_instance(self, instance: str, groups: dict[str, SecurityGroup]) -> None:
        """Define the instance's filter and point its interfaces at it, or, in no group
        any more, take the filter off its interfaces and remove it."""
        mine = [g for g in groups.values() if instance in g.instances]
        limited = any(r.direction == "egress" for g in mine for r in g.rules)
        self.provider.apply_instance_groups(instance, [g.name for g in mine], limited)

    @staticmethod
    def _referring(group: str, groups: dict[str, SecurityGroup]) -> set[str]:
        return {g.name for g in groups.values() if any(r.group == group for r in g.rules)}

    # ----- verbs ------------------------------------------------------------------------
    @_serialized
    def create(self, name: str, rules: list[Rule] | None = None,
               stack: str = "adhoc") -> SecurityGroup:
        check_name(name, "security group name")
        self.provider.require("secgroups")
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
        with self.ctx.inventory.operation("create", KIND, name):
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
        with self.ctx.inventory.operation("rule add", KIND, name) as op:
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
        with self.ctx.inventory.operation("rule delete", KIND, name) as op:
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
        self.provider.metadata(instance)  # NotFound / NotManaged
        groups = self._all()
        group = self.get(name)
        if instance in group.instances:
            return group
        group.instances.append(instance)
        groups[name] = group
        with self.ctx.inventory.operation("attach", KIND, name) as op:
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
        with self.ctx.inventory.operation("detach", KIND, name) as op:
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
        with self.ctx.inventory.operation("delete", KIND, name):
            self.provider.remove_group(name)
            self.ctx.inventory.remove(KIND, name)

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
            with self.ctx.inventory.operation("update", KIND, name) as op:
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
            if self.provider.exists(inst):
                self.detach(name, inst)
            else:
                self.instance_deleted(inst)
        self.delete(name)

    @_serialized
    def instance_deleted(self, instance: str) -> None:
        """After instance `instance` is gone (an event): drop it from its groups, remove its
        filter, and recompile the groups whose rules named those groups."""
        groups = self._all()
        changed = [g for g in groups.values() if instance in g.instances]
        for g in changed:
            g.instances.remove(instance)
            self._save(g)
        self.provider.forget_instance_filter(instance)
        refer = set().union(*(self._referring(g.name, groups) for g in changed)) \
            if changed else set()
        self._compile(refer, groups)

    def sync(self) -> None:
        """Rebuild every group's and member's filter from the inventory (after a member's
        address changed, or filters were removed behind nbcloud's back)."""
        groups = self._all()
        self._compile(set(groups), groups)
        for inst in sorted({i for g in groups.values() for i in g.instances}):
            if self.provider.exists(inst):
                self._compile_instance(inst, groups)
