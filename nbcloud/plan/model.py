"""What a plan is made of: the live state it compares with, its actions, and the plan as
the notebook shows it."""
from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field

KINDS = ("network", "volume", "secgroup", "instance", "loadbalancer",  # creation order
         "ipool")
SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}
COLOURS = {"create": "#2a7d2a", "update": "#a06800", "replace": "#8a2be2",
           "delete": "#b22222"}


def user_data_digest(text: str | None) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else ""


@dataclass
class LiveState:
    """What libvirt has, read in bulk: domains (nbcloud's, with sizes; others by name),
    networks and data volumes."""
    domains: dict[str, dict] = field(default_factory=dict)
    foreign_domains: list[str] = field(default_factory=list)
    networks: dict[str, dict] = field(default_factory=dict)    # name -> cidr, mode, managed
    volumes: dict[str, dict] = field(default_factory=dict)     # name -> tier, size, pool
    # balancers are host processes, not libvirt objects: their record is their state
    loadbalancers: dict[str, dict] = field(default_factory=dict)   # name -> spec
    # security groups: their record is their state (libvirt's filters are derived)
    secgroups: dict[str, dict] = field(default_factory=dict)       # name -> spec
    # instance pools likewise (their members are domains, listed with the others)
    ipools: dict[str, dict] = field(default_factory=dict)          # name -> spec
    # instances recorded on a host that does not answer: name -> that host
    lost: dict[str, str] = field(default_factory=dict)
    # what runs (runtime.py): balancer processes (None: not processes here), the port
    # forwards whose rules are in place (None: not read), what each network's DNS answers
    balancers_running: dict[str, bool | None] = field(default_factory=dict)
    forwards: set[str] | None = None
    dns: dict[str, dict[str, str]] = field(default_factory=dict)  # network -> name -> ip


@dataclass(frozen=True)
class Action:
    op: str                          # create, update, replace, delete
    kind: str                        # network, volume, instance
    name: str
    changes: tuple[str, ...] = ()    # what differs, one phrase each
    desired: object = None           # the spec to create/converge to (None for delete)
    live: bool = True                # for delete: whether there is anything left to delete

    def line(self) -> str:
        detail = f"  ({'; '.join(self.changes)})" if self.changes else ""
        return f"{SYMBOLS[self.op]:>3} {self.op:<8} {self.kind} {self.name}{detail}"


@dataclass
class Plan:
    """The ordered actions that bring stack `stack` to its desired state."""
    stack: str
    actions: list[Action] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    applied: bool = False

    def __bool__(self) -> bool:
        return bool(self.actions)

    def counts(self) -> dict[str, int]:
        return {op: sum(a.op == op for a in self.actions) for op in SYMBOLS}

    def summary(self) -> str:
        if not self.actions:
            return f"stack {self.stack}: no changes (the cell, the inventory and libvirt agree)"
        c = self.counts()
        verb = "applied" if self.applied else "plan"
        return (f"{verb} for stack {self.stack}: {c['create']} to create, {c['update']} to "
                f"update in place, {c['replace']} to replace, {c['delete']} to delete")

    def __str__(self) -> str:
        lines = [self.summary()] + [a.line() for a in self.actions]
        lines += [f"drift: {d}" for d in self.drift]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<div style='color:{COLOURS[a.op]}'>{html.escape(a.line())}</div>"
            for a in self.actions)
        rows += "".join(f"<div style='color:#a06800'>drift: {html.escape(d)}</div>"
                        for d in self.drift)
        return (f"<pre><b>{html.escape(self.summary())}</b>\n{rows}</pre>")
