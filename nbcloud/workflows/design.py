"""The design palette's model: items (servers, storage, CD-ROMs, Internet, load balancers,
composite instances) and the connections between them -> a `%%cloud` stack and a drawing.

`Design` is plain Python (tests and notebooks drive it: `d.add("server", "web")`,
`d.connect("web", "internet")`); `DesignPalette` (design_palette.py) puts widgets on it.
Each palette item becomes a section entry of the stack YAML (DESIGN.md, The magic):
Server -> `instance:`, Composite Instances -> `instance:` with a `count`, HDD/SSD Storage ->
`volume:` with that tier, Internet -> a `nat` entry of `network:`, Load Balancer ->
`loadbalancer:` (emitted only when the design has one). A CD-ROM has no stack section (it is
made from a folder of files), so it becomes comments with the two magic lines to run.
"""
from __future__ import annotations

import html
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml

from nbcloud.core import stackfile as stack_model
from nbcloud.core.spec import InvalidSpec, check_count, check_name, parse_size
from nbcloud.workflows.topology import Graph, Node

if TYPE_CHECKING:
    from nbcloud.workflows.stacks import Stacks


@dataclass(frozen=True)
class ItemKind:
    label: str                    # what the palette's button says
    topology_kind: str            # how the drawing shows it
    defaults: dict                # the properties an item of this kind has


PALETTE: dict[str, ItemKind] = {
    "server": ItemKind("Server", "instance", {"image": "tiny", "flavor": "t.nano"}),
    "hdd": ItemKind("HDD Storage", "volume", {"size": "1G"}),
    "ssd": ItemKind("SSD Storage", "volume", {"size": "1G"}),
    "cdrom": ItemKind("CD-ROM", "cdrom", {"folder": "DIR"}),
    "internet": ItemKind("Internet", "network", {"cidr": ""}),
    "loadbalancer": ItemKind("Load Balancer", "loadbalancer", {"port": 80}),
    "composite": ItemKind("Composite Instances", "instance",
                          {"image": "tiny", "flavor": "t.nano", "count": 2}),
}
_ALIASES = {"hdd storage": "hdd", "ssd storage": "ssd", "cd-rom": "cdrom",
            "load balancer": "loadbalancer", "lb": "loadbalancer",
            "composite instances": "composite", "instance": "server"}
_COMPUTE = ("server", "composite")
_STORAGE = ("hdd", "ssd", "cdrom")
#: Which kinds may be connected (unordered).
ALLOWED = {frozenset(p) for p in [
    ("server", "hdd"), ("server", "ssd"), ("server", "cdrom"), ("server", "internet"),
    ("composite", "hdd"), ("composite", "ssd"), ("composite", "internet"),
    ("loadbalancer", "server"), ("loadbalancer", "composite"),
    ("loadbalancer", "internet")]}
#: Where an Internet item without a CIDR gets one: the first free /24 in here.
AUTO_CIDRS = ipaddress.IPv4Network("10.90.0.0/16")


def kind_of(word: str) -> str:
    """'Server', 'SSD Storage', 'lb', ... -> the palette kind ('server', 'ssd', ...)."""
    key = " ".join(str(word).lower().replace("_", " ").split())
    key = _ALIASES.get(key, key)
    if key not in PALETTE:
        raise InvalidSpec(f"{word!r:.40} is not on the palette: use "
                          + ", ".join(PALETTE))
    return key


@dataclass
class Item:
    kind: str
    name: str
    props: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.props.get("count", 1)) if self.kind == "composite" else 1

    def instance_names(self) -> list[str]:
        if self.kind == "composite":
            return [f"{self.name}-{i}" for i in range(1, self.count + 1)]
        return [self.name]


class Design:
    """Items and connections; `yaml()` is the equivalent stack, `graph()` its drawing."""

    def __init__(self, stacks: Stacks | None = None):
        self.stacks = stacks
        self.items: dict[str, Item] = {}
        self.links: list[frozenset[str]] = []   # in the order they were made

    # ----- editing ----------------------------------------------------------------------------
    def add(self, kind: str, name: str, **props) -> Item:
        """Add an item of palette `kind` called `name` (props: image, flavor, size, count,
        cidr, port, folder, as the kind has them)."""
        kind = kind_of(kind)
        check_name(name, f"{PALETTE[kind].label} name")
        if name in self.items:
            raise InvalidSpec(f"the design has an item called {name!r} already: pick "
                              "another name")
        allowed = PALETTE[kind].defaults
        for key in props:
            if key not in allowed:
                raise InvalidSpec(f"{PALETTE[kind].label} has no {key!r:.40}: use "
                                  + ", ".join(allowed))
        values = {**allowed, **{k: v for k, v in props.items() if v is not None}}
        self._check_props(kind, name, values)
        item = Item(kind, name, values)
        if kind == "internet" and not values["cidr"]:
            values["cidr"] = self._free_cidr()
        self.items[name] = item
        return item

    @staticmethod
    def _check_props(kind: str, name: str, values: dict) -> None:
        if kind in ("hdd", "ssd"):
            parse_size(values["size"], f"{name} size")
        if kind == "composite":
            values["count"] = check_count(values["count"], f"{name} count")
        if kind == "loadbalancer":
            port = values["port"]
            if isinstance(port, bool) or not str(port).isdigit() or not 1 <= int(port) < 65536:
                raise InvalidSpec(f"{name} port {port!r:.20} is not allowed: use a whole "
                                  "number from 1 to 65535")
            values["port"] = int(port)
        if kind == "internet" and values["cidr"]:
            try:
                net = ipaddress.IPv4Network(str(values["cidr"]), strict=True)
            except ValueError:
                raise InvalidSpec(f"{name} cidr {values['cidr']!r:.40} is not allowed: use "
                                  "a network like 10.90.1.0/24") from None
            values["cidr"] = str(net)

    def _free_cidr(self) -> str:
        """The first /24 of AUTO_CIDRS that overlaps no libvirt network and no other item."""
        used = [ipaddress.IPv4Network(i.props["cidr"]) for i in self.items.values()
                if i.kind == "internet" and i.props.get("cidr")]
        if self.stacks is not None:
            used += [info.network for info in self.stacks.cloud.provider.network_infos()]
        for net in AUTO_CIDRS.subnets(new_prefix=24):
            if not any(net.overlaps(u) for u in used):
                return str(net)
        raise InvalidSpec("no free /24 is left in 10.90.0.0/16: give the Internet a cidr")

    def _get(self, name: str) -> Item:
        if name not in self.items:
            if name == "internet":
                # `d.connect("web", "internet")` reads as the user means it
                return self.add("internet", "internet")
            raise InvalidSpec(f"the design has no item called {name!r:.40}: add it first"
                              + (f" (items: {', '.join(self.items)})" if self.items else ""))
        return self.items[name]

    def connect(self, a: str, b: str) -> None:
        """Connect two items (server to storage, server to Internet, LB to servers...).
        Connecting to `internet` when no item has that name adds an Internet item."""
        added = [n for n in (a, b) if n == "internet" and n not in self.items]
        try:
            self._connect(self._get(a), self._get(b))
        except InvalidSpec:
            for name in added:  # nothing half-made: the Internet this call added goes
                self.items.pop(name, None)
            raise

    def _connect(self, ia: Item, ib: Item) -> None:
        a, b = ia.name, ib.name
        pair = frozenset((a, b))
        if pair in self.links:
            return
        if frozenset((ia.kind, ib.kind)) not in ALLOWED or a == b:
            ok = sorted("-".join(sorted(p)) for p in ALLOWED)
            raise InvalidSpec(f"a {PALETTE[ia.kind].label} cannot be connected to a "
                              f"{PALETTE[ib.kind].label}: allowed are {', '.join(ok)}")
        compute, other = (ia, ib) if ia.kind in _COMPUTE else (ib, ia)
        if other.kind in _STORAGE:
            if compute.count > 1:
                raise InvalidSpec(f"{other.name} attaches to one instance, and {compute.name} "
                                  f"is {compute.count}: give it count 1 or use a Server")
            holder = [n for n in self.neighbours(other.name) if n != compute.name]
            if holder:
                raise InvalidSpec(f"{other.name} is connected to {holder[0]} already: a "
                                  "volume or CD-ROM attaches to one server")
        for lb, net in ((ia, ib), (ib, ia)):
            if lb.kind == "loadbalancer" and net.kind == "internet":
                have = [n for n in self.neighbours(lb.name)
                        if self.items[n].kind == "internet"]
                if have:
                    raise InvalidSpec(f"load balancer {lb.name} listens on {have[0]} "
                                      "already: a load balancer has one network")
        self.links.append(pair)

    def disconnect(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair not in self.links:
            raise InvalidSpec(f"{a} and {b} are not connected")
        self.links.remove(pair)

    def remove(self, name: str) -> None:
        """Remove an item and its connections."""
        if name not in self.items:
            raise InvalidSpec(f"the design has no item called {name!r:.40}")
        del self.items[name]
        self.links = [p for p in self.links if name not in p]

    def neighbours(self, name: str) -> list[str]:
        return [n for p in self.links if name in p for n in p if n != name]

    def _linked(self, item: Item, *kinds: str) -> list[Item]:
        return [self.items[n] for n in self.neighbours(item.name)
                if self.items[n].kind in kinds]

    # ----- the stack ----------------------------------------------------------------------
    def sections(self) -> dict[str, dict]:
        """The stack as sections -> name -> fields (what the YAML holds)."""
        out: dict[str, dict] = {"network": {}, "volume": {}, "instance": {}}
        lbs: dict[str, dict] = {}
        for item in self.items.values():
            p = item.props
            if item.kind == "internet":
                out["network"][item.name] = {"cidr": p["cidr"], "mode": "nat"}
            elif item.kind in ("hdd", "ssd"):
                out["volume"][item.name] = {"size": p["size"], "tier": item.kind}
            elif item.kind in _COMPUTE:
                fields = {"image": p["image"], "flavor": p["flavor"]}
                nets = [i.name for i in self._linked(item, "internet")]
                vols = [i.name for i in self._linked(item, "hdd", "ssd")]
                if nets:
                    fields["network"] = nets
                if vols:
                    fields["volume"] = vols
                if item.kind == "composite":
                    fields["count"] = item.count
                out["instance"][item.name] = fields
            elif item.kind == "loadbalancer":
                lbs[item.name] = self._balancer(item)
        if lbs:
            out["loadbalancer"] = lbs
        return {k: v for k, v in out.items() if v}

    def _balancer(self, lb: Item) -> dict:
        members = self._linked(lb, *_COMPUTE)
        nets = [i.name for i in self._linked(lb, "internet")]
        if not nets:  # the network its members share, else the default one
            shared = None
            for m in members:
                mine = [i.name for i in self._linked(m, "internet")] or ["nbcloud"]
                shared = [n for n in (shared if shared is not None else mine) if n in mine]
            if shared == []:
                raise InvalidSpec(f"the members of load balancer {lb.name} share no network:"
                                  f" connect {lb.name} to the Internet they should share")
            nets = shared or ["nbcloud"]
        for m in members:
            mine = [i.name for i in self._linked(m, "internet")] or ["nbcloud"]
            if nets[0] not in mine:
                raise InvalidSpec(f"load balancer {lb.name} is on network {nets[0]} and "
                                  f"{m.name} is not: connect {m.name} to {nets[0]}")
        return {"network": nets[0], "port": lb.props["port"],
                "members": [n for m in members for n in m.instance_names()]}

    def cdrom_lines(self) -> list[str]:
        """What to run for each CD-ROM (a stack cannot declare one)."""
        lines = []
        for item in self.items.values():
            if item.kind == "cdrom":
                lines.append(f"%cloud cdrom create {item.name} --from {item.props['folder']}")
                lines += [f"%cloud cdrom attach {item.name} {s.name}"
                          for s in self._linked(item, "server")]
        return lines

    def yaml(self) -> str:
        """The body of the equivalent `%%cloud apply` cell."""
        lines: list[str] = []
        for section, entries in self.sections().items():
            lines.append(f"{section}:")
            for name, fields in entries.items():
                flow = yaml.safe_dump(fields, default_flow_style=True, sort_keys=False,
                                      width=10_000).strip()
                lines.append(f"  {name}: {flow}")
        cds = self.cdrom_lines()
        if cds:
            lines.append("# CD-ROMs have no stack section: after apply, run")
            lines += [f"#   {line}" for line in cds]
        return "\n".join(lines) + "\n" if lines else ""

    def cell(self, stack: str = "design") -> str:
        return f"%%cloud apply --stack {stack}\n" + self.yaml()

    def stack(self, name: str = "design") -> stack_model.Stack:
        """The design parsed by stack.py (validates what it accepts). Raises InvalidSpec if
        the design has a load balancer and this nbcloud's stacks do not take one yet."""
        self._check_supported()
        return stack_model.parse(self.yaml(), {}, name)

    def _check_supported(self) -> None:
        if "loadbalancer" in self.sections() and "loadbalancer" not in stack_model.SECTIONS:
            raise InvalidSpec("this nbcloud's stacks have no loadbalancer: section yet: "
                              "remove the load balancer from the design, or make it with "
                              "`%cloud lb create` after applying")

    def apply(self, name: str = "design", show=None):
        """Apply the design as stack `name` (as `%%cloud apply --stack NAME` would)."""
        if self.stacks is None:
            raise InvalidSpec("this design has no cloud to apply to: make it with "
                              "`%cloud design` or Design(cloud.stacks)")
        self._check_supported()
        return self.stacks.apply(name, self.yaml(), {}, show=show)

    # ----- the drawing ------------------------------------------------------------------------
    def graph(self) -> Graph:
        g = Graph()
        ids = {}
        for item in self.items.values():
            kind = PALETTE[item.kind].topology_kind
            details = tuple((k, str(v)) for k, v in item.props.items())
            if item.kind in ("hdd", "ssd"):
                details = (("tier", item.kind),) + details
            label = f"{item.name} ×{item.count}" if item.kind == "composite" else ""
            node = Node(kind, item.name, "planned", "", details, label)
            g.add(node)
            ids[item.name] = node.id
        for pair in self.links:
            a, b = sorted(pair)
            g.link(ids[a], ids[b])
        return g

    def __repr__(self) -> str:
        try:
            text = self.yaml()
        except InvalidSpec as exc:
            text = f"# not a stack yet: {exc}\n"
        return f"<Design {len(self.items)} items, {len(self.links)} connections>\n" + text

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"
