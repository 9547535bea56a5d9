"""Security groups: named ingress/egress rules, enforced by the provider (on libvirt, as
nwfilters: providers/libvirt/firewall.py).

A rule may name another group as its source: it allows that group's members' current
addresses, and every group whose rules name G is recompiled when G's membership changes.

The inventory holds each group as kind "secgroup", spec {"rules": [...], "instances":
[member names], "next_id": n}; the provider's filters are derived from it and rebuilt by
`sync`.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from nbcloud.context import Context
from nbcloud.core import config
from nbcloud.core.converge import apply_until_stable
from nbcloud.core.display import Table
from nbcloud.core.errors import AlreadyExists, CloudError, NotFound, NotManaged
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


def _joining(instance: str) -> Callable[[SecurityGroup], bool]:
    """An edit that adds `instance` to a group's members (False: it is one already)."""
    def edit(group: SecurityGroup) -> bool:
        if instance in group.instances:
            return False
        group.instances.append(instance)
        return True
    return edit


def _leaving(instance: str) -> Callable[[SecurityGroup], bool]:
    """An edit that takes `instance` out of a group's members (False: it was not in)."""
    def edit(group: SecurityGroup) -> bool:
        if instance not in group.instances:
            return False
        group.instances.remove(instance)
        return True
    return edit


def _group(res) -> SecurityGroup:
    return SecurityGroup(res.name, [Rule.from_json(r) for r in res.spec.get("rules", [])],
                         list(res.spec.get("instances", [])), res.spec.get("next_id", 1),
                         res.stack)


class SecurityGroups:
    """`cloud.secgroups`: create, rules, attach, detach, list, delete.

    Every change of a group's record is one read-modify-write transaction
    (`Records.update`), so that threads and processes changing one group at once lose
    nothing; the filters are then made what the records say (`apply_until_stable`)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider
        self.owner = config.mark(ctx.inventory.path)   # names this inventory's filters
        ctx.events.on(INSTANCE_DELETED, lambda name, meta: self.instance_deleted(name))

    # ----- records ----------------------------------------------------------------------
    def _all(self) -> dict[str, SecurityGroup]:
        return {res.name: _group(res) for res in self.ctx.inventory.all(KIND)
                if res.state != "deleting"}

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

    def _change(self, name: str, edit: Callable[[SecurityGroup], bool | None], *,
                state: str | None = None) -> tuple[SecurityGroup, bool]:
        """Read group `name`, `edit` it (True/None: changed, False: leave it; it may
        raise to change nothing) and write it, in one transaction. Returns the group as
        it is now and whether it changed."""
        check_name(name, "security group name")
        changed = []

        def step(res):
            if res is None or res.state == "deleting":
                raise NotFound(f"security group {name!r} does not exist (see `%cloud "
                               "secgroup list`)")
            group = _group(res)
            if edit(group) is False:
                return None
            changed.append(True)
            return group.spec()
        return _group(self.ctx.inventory.update(KIND, name, step, state=state)), \
            bool(changed)

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
        for name in sorted(names & set(groups)):
            self.provider.apply_group(name, groups[name].rules, members, self.owner)

    def _compile_instance(self, instance: str, groups: dict[str, SecurityGroup]) -> None:
        """Define the instance's filter and point its interfaces at it, or, in no group
        any more, give its interfaces back plain anti-spoofing and remove its filter."""
        mine = [g for g in groups.values() if instance in g.instances]
        limited = any(r.direction == "egress" for g in mine for r in g.rules)
        self.provider.apply_instance_groups(instance, [g.name for g in mine], limited,
                                            self.owner)

    def _apply(self, names: Callable[[dict[str, SecurityGroup]], set[str]],
               instances: set[str] = frozenset()) -> None:
        """Make the filters of groups `names(groups)` and of `instances` what the records
        say, until the records hold still (`core.converge.apply_until_stable`)."""
        def apply(groups: dict[str, SecurityGroup]) -> None:
            self._compile(names(groups), groups)
            for inst in sorted(instances):
                if self.provider.exists(inst):
                    self._compile_instance(inst, groups)
        apply_until_stable(self._all, apply)

    @staticmethod
    def _referring(group: str, groups: dict[str, SecurityGroup]) -> set[str]:
        return {g.name for g in groups.values() if any(r.group == group for r in g.rules)}

    def _check_instance(self, instance: str) -> None:
        """`instance` must be nbcloud's and this inventory's: another inventory's
        instances are filtered by that inventory's groups only."""
        check_name(instance, "instance name")
        self.provider.metadata(instance)  # NotFound / NotManaged
        if self.ctx.inventory.get("instance", instance) is None:
            raise NotManaged(f"instance {instance!r} is not in this inventory "
                             f"({self.ctx.inventory.path}): security groups filter only "
                             "instances this inventory made or adopted")

    # ----- verbs ------------------------------------------------------------------------
    def create(self, name: str, rules: list[Rule] | None = None,
               stack: str = "adhoc") -> SecurityGroup:
        check_name(name, "security group name")
        self.provider.require("secgroups")
        group = SecurityGroup(name, [], [], 1, stack)
        for r in rules or []:  # ids renumbered 1..n so that a stack's rules keep stable ids
            group.rules.append(Rule(group.next_id, r.direction, r.proto, r.ports, r.cidr,
                                    r.group))
            group.next_id += 1
        self._check_sources(group, {**self._all(), name: group})

        def make(res):
            if res is not None:
                raise AlreadyExists(f"security group {name!r} exists already")
            return group.spec()
        with self.ctx.inventory.operation("create", KIND, name):
            self.ctx.inventory.update(KIND, name, make, state="active", stack=stack)
            try:
                self._apply(lambda groups: {name})
            except BaseException:
                self.ctx.inventory.remove(KIND, name)
                self.provider.remove_group(name, self.owner)
                raise
        return group

    @staticmethod
    def _check_sources(group: SecurityGroup, groups: dict[str, SecurityGroup]) -> None:
        for r in group.rules:
            if r.group and r.group not in groups:
                raise NotFound(f"source group {r.group!r} does not exist: create it first "
                               f"(`%cloud secgroup create {r.group}`)")

    def add_rule(self, name: str, **parts) -> Rule:
        """Add a rule (see `make_rule` for the parts); live on every member at once."""
        make_rule(0, **parts)          # a bad rule is refused before anything is written
        added: list[Rule] = []

        def edit(group: SecurityGroup) -> None:
            rule = make_rule(group.next_id, **parts)
            group.rules.append(rule)
            group.next_id += 1
            self._check_sources(group, {**self._all(), name: group})
            added.append(rule)
        self.get(name)
        with self.ctx.inventory.operation("rule add", KIND, name) as op:
            group, _ = self._change(name, edit)
            rule = added[-1]
            op.detail = rule.describe()
            self._apply_rules(name, group, rule, lambda g: rule in g.rules and
                              g.rules.remove(rule))
        return rule

    def delete_rule(self, name: str, rule_id: int) -> Rule:
        removed: list[Rule] = []

        def edit(group: SecurityGroup) -> None:
            found = [r for r in group.rules if r.id == int(rule_id)]
            if not found:
                raise NotFound(f"security group {name!r} has no rule {rule_id} (it has: "
                               f"{', '.join(str(r.id) for r in group.rules) or 'none'})")
            group.rules.remove(found[0])
            removed.append(found[0])
        def put_back(group: SecurityGroup) -> None:
            group.rules = sorted(group.rules + removed, key=lambda r: r.id)
        self.get(name)
        with self.ctx.inventory.operation("rule delete", KIND, name) as op:
            group, _ = self._change(name, edit)
            op.detail = removed[0].describe()
            self._apply_rules(name, group, removed[0], put_back)
        return removed[0]

    def _apply_rules(self, name: str, group: SecurityGroup, rule: Rule, undo) -> None:
        """After a rule of group `name` changed: its filter, and its members' filters if
        their default egress changes; on failure the record is put back (`undo`)."""
        members = set(group.instances) if rule.direction == "egress" else set()
        try:
            self._apply(lambda groups: {name}, members)
        except BaseException:
            self._change(name, undo)
            self._apply(lambda groups: {name}, members)
            raise

    def attach(self, name: str, instance: str) -> SecurityGroup:
        """Make `instance` a member of group `name`: its interfaces are filtered live."""
        self._check_instance(instance)
        if instance in self.get(name).instances:
            return self.get(name)
        with self.ctx.inventory.operation("attach", KIND, name) as op:
            op.detail = instance
            self._change(name, _joining(instance))
            self._apply_membership(name, instance, _leaving(instance))
        return self.get(name)

    def detach(self, name: str, instance: str) -> SecurityGroup:
        check_name(instance, "instance name")

        def edit(group: SecurityGroup) -> None:
            if not _leaving(instance)(group):
                raise CloudError(f"instance {instance!r} is not in security group "
                                 f"{name!r}")
        self.get(name)
        with self.ctx.inventory.operation("detach", KIND, name) as op:
            op.detail = instance
            self._change(name, edit)
            self._apply_membership(name, instance, _joining(instance))
        return self.get(name)

    def _apply_membership(self, name: str, instance: str, undo) -> None:
        """After `instance` joined or left group `name`: its own filter, and the filters
        of groups whose rules name `name`; on failure the record is put back."""
        def names(groups):
            return self._referring(name, groups)
        try:
            self._apply(names, {instance})
        except BaseException:
            self._change(name, undo)
            self._apply(names, {instance})
            raise

    def delete(self, name: str) -> None:
        def edit(group: SecurityGroup) -> None:
            if group.instances:
                raise CloudError(f"security group {name!r} is attached to "
                                 f"{', '.join(group.instances)}: detach it first")
            users = sorted(self._referring(name, self._all()) - {name})
            if users:
                raise CloudError(f"security group {name!r} is named by rules of "
                                 f"{', '.join(users)}: delete those rules first")
        self.get(name)
        with self.ctx.inventory.operation("delete", KIND, name):
            # marked first, in the same transaction as the checks: no attach gets in
            self._change(name, edit, state="deleting")
            try:
                self.provider.remove_group(name, self.owner)
            except BaseException:
                self.ctx.inventory.set_state(KIND, name, "active")
                raise
            self.ctx.inventory.remove(KIND, name)

    def converge(self, name: str, rules: list[Rule], members: list[str],
                 managed: set[str], stack: str) -> None:
        """A stack's group: create it if missing, make its rules `rules` (recompiled only
        if they differ) and its membership among `managed` (the stack's instances)
        `members`; members from outside the stack are left as they are."""
        if name not in self._all():
            self.create(name, stack=stack)
        want = [rule_text(r) for r in rules]

        def edit(group: SecurityGroup) -> bool:
            if [rule_text(r) for r in group.rules] == want:
                return False
            group.rules = [Rule(i, r.direction, r.proto, r.ports, r.cidr, r.group)
                           for i, r in enumerate(rules, 1)]
            group.next_id = len(rules) + 1
            self._check_sources(group, {**self._all(), name: group})
            return True
        if [rule_text(r) for r in self.get(name).rules] != want:
            with self.ctx.inventory.operation("update", KIND, name) as op:
                op.detail = "; ".join(want)
                group, changed = self._change(name, edit)
                if changed:
                    self._apply(lambda groups: {name}, set(group.instances))
        group = self.get(name)
        for inst in sorted(set(members) - set(group.instances)):
            self.attach(name, inst)
        for inst in sorted((set(group.instances) & managed) - set(members)):
            self.detach(name, inst)

    def delete_with_members(self, name: str) -> None:
        """Detach every member, then delete the group (still refused while another
        group's rules name it); what a stack does with a group it no longer declares."""
        for inst in list(self.get(name).instances):
            if self.provider.exists(inst):
                self.detach(name, inst)
            else:
                self.instance_deleted(inst)
        self.delete(name)

    def instance_deleted(self, instance: str) -> None:
        """After instance `instance` is gone (an event): drop it from its groups, remove its
        filter, and recompile the groups whose rules named those groups."""
        left = []
        for g in self.list():
            if instance in g.instances:
                self._change(g.name, _leaving(instance))
                left.append(g.name)
        self.provider.forget_instance_filter(instance, self.owner)
        if left:
            self._apply(lambda groups: set().union(
                *(self._referring(n, groups) for n in left)))

    def sync(self) -> None:
        """Rebuild every group's and member's filter from the inventory (after a member's
        address changed, or filters were removed behind nbcloud's back)."""
        groups = self._all()
        self._apply(lambda now: set(now),
                    {i for g in groups.values() for i in g.instances})
