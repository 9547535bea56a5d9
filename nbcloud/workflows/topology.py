"""The topology: inventory + live libvirt -> a graph model -> a Plotly figure.

Nodes are resources (instances, networks, volumes, pools, cdroms, and any other kind the
inventory holds: security groups, load balancers, floating addresses, instance pools);
edges join the resources that name each other. The graph is read in bulk: one listing per
kind from libvirt, one query of the inventory. The picture is laid out in columns by kind,
and every node keeps the slot it was first given (`Layout`), so a new instance never moves
the ones already drawn. `LiveTopology` (topology_live.py) keeps a figure up to date.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nbcloud.core.spec import format_size

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services

NodeId = tuple[str, str]          # (kind, name)


@dataclass(frozen=True)
class Style:
    column: int                   # left to right: the way traffic flows, then storage
    symbol: str                   # Plotly marker symbol
    colour: str                   # the kind's colour when its state is normal
    label: str                    # the legend entry


#: Kind -> how it is drawn. Unknown kinds are drawn as OTHER, in a column of their own.
STYLES: dict[str, Style] = {
    "floating": Style(0, "diamond-wide", "#393b79", "floating addresses"),
    "loadbalancer": Style(1, "star", "#bcbd22", "load balancers"),
    # what instances join share a column next to theirs: the common edges stay short
    "network": Style(2, "hexagon", "#1f77b4", "networks"),
    "secgroup": Style(2, "octagon", "#e377c2", "security groups"),
    "ipool": Style(2, "star-square", "#637939", "instance pools"),
    "instance": Style(3, "square", "#2ca02c", "instances"),
    "volume": Style(4, "circle", "#9467bd", "volumes"),
    "cdrom": Style(4, "diamond", "#17becf", "cdroms"),
    "pool": Style(5, "triangle-up", "#8c564b", "storage pools"),
    # several hosts: each instance is joined to its host, and instances sit by host
    "host": Style(4, "triangle-down", "#7f7f7f", "hosts"),
}
OTHER = Style(6, "x", "#444444", "other")
#: Edges run as lines with right angles, in lanes between the columns and channels between
#: the rows, never through a node or its label (drawn above it): LANES lanes in each gap
#: between columns, LANE_STEP of a column apart; an edge that skips columns crosses them in
#: a channel CHANNEL of a row above the row it goes to (labels take up to ~0.45 of a row).
LANES = 7
LANE_STEP = 0.05
CHANNEL = 0.58
#: Labels longer than this are cut (with an ellipsis; the hover shows the whole name), so
#: that a label stays clear of the lanes on either side of its column.
LABEL_MAX = 13
#: States drawn in a colour of their own, whatever the kind.
STATE_COLOURS = {
    "missing": "#d62728", "lost": "#d62728", "down": "#d62728", "crashed": "#d62728", "failed": "#d62728", "error": "#d62728",
    "stopped": "#aaaaaa", "inactive": "#aaaaaa", "suspended": "#aaaaaa",
    "starting": "#ff7f0e", "stopping": "#ff7f0e", "paused": "#ff7f0e",
}
#: Spec fields that name other resources, and the kinds such a name may be (first wins).
REF_FIELDS: dict[str, tuple[str, ...]] = {
    "network": ("network",), "networks": ("network",),
    "volume": ("volume", "cdrom"), "volumes": ("volume", "cdrom"),
    "instance": ("instance",), "instances": ("instance",), "members": ("instance",),
    "pool": ("pool",),
}
_HIDDEN_FIELDS = {"hostkey", "user_data", "recovered", "files", "attached_to", "target"}


def style(kind: str) -> Style:
    return STYLES.get(kind, OTHER)


def colour(kind: str, state: str) -> str:
    return STATE_COLOURS.get(state, style(kind).colour)


@dataclass(frozen=True)
class Node:
    kind: str
    name: str
    state: str
    stack: str = ""
    details: tuple[tuple[str, str], ...] = ()     # shown on hover, in this order
    label: str = ""                               # drawn beside the marker (default: name)
    group: str = ""                               # nodes of a column sit by group (host)

    @property
    def id(self) -> NodeId:
        return (self.kind, self.name)

    def hover(self) -> str:
        lines = [f"<b>{html.escape(self.name)}</b> ({html.escape(self.kind)})",
                 f"state: {html.escape(self.state)}"]
        if self.stack:
            lines.append(f"stack: {html.escape(self.stack)}")
        lines += [f"{html.escape(k)}: {html.escape(v)}" for k, v in self.details]
        return "<br>".join(lines)


@dataclass
class Graph:
    """Nodes by id, and undirected edges as sorted (id, id) pairs."""
    nodes: dict[NodeId, Node] = field(default_factory=dict)
    edges: set[tuple[NodeId, NodeId]] = field(default_factory=set)

    def add(self, node: Node) -> None:
        self.nodes[node.id] = node

    def link(self, a: NodeId, b: NodeId) -> None:
        if a != b:
            self.edges.add((a, b) if a <= b else (b, a))

    def of_kind(self, kind: str) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.kind == kind),
                      key=lambda n: n.name)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for kind, _ in self.nodes:
            out[kind] = out.get(kind, 0) + 1
        return dict(sorted(out.items()))

    def __repr__(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in self.counts().items()) or "empty"
        return f"<Graph {kinds}; {len(self.edges)} edges>"


# ----- reading: inventory + live libvirt, in bulk ---------------------------------------------
@dataclass
class Live:
    """What libvirt shows, one listing per kind."""
    domains: dict[str, dict] = field(default_factory=dict)    # name -> domains_live entry
    states: dict[str, str] = field(default_factory=dict)      # domain name -> state
    networks: dict[str, object] = field(default_factory=dict)  # name -> NetworkInfo
    volumes: dict[str, object] = field(default_factory=dict)   # name -> DataVolume
    pools: dict[str, object] = field(default_factory=dict)     # name -> PoolInfo (read lazily)
    hosts: dict[str, object] = field(default_factory=dict)     # name -> HostInfo (several)
    pooled: bool = True     # volumes live in storage pools (libvirt), not a cloud's types


def read_live(cloud: Services) -> Live:
    domains, _foreign = cloud.provider.domains_live()
    hosts = {h.name: h for h in cloud.hosts.infos()} if cloud.hosts.records() else {}
    return Live(domains=domains, states=cloud.provider.domain_states(),
                networks={i.name: i for i in cloud.provider.network_infos()},
                volumes=cloud.volumes.all(), pooled=cloud.provider.has("storage-pools"), hosts=hosts)


def _split(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _instance(name: str, row, live: Live) -> tuple[Node, list[tuple[str, ...]]]:
    dom = live.domains.get(name)
    spec = row.spec if row else {}
    host = (dom or {}).get("host") or spec.get("host", "") if live.hosts else ""
    if dom is None:
        down = host in live.hosts and not live.hosts[host].up
        meta, state = {}, "lost" if down else "missing"
        refs = [(("network",), n) for n in _names(spec.get("networks"))] + \
            [(("volume", "cdrom"), v) for v in _names(spec.get("volumes"))]
    else:
        meta = dom["meta"]
        state = live.states.get(name, "running" if dom["running"] else "stopped")
        refs = [(("network",), n) for n in _split(meta.get("networks", ""))] + \
            [(("volume", "cdrom"), v) for v in _split(meta.get("volumes", ""))]
    details = [("flavor", meta.get("flavor") or spec.get("flavor", "?")),
               ("image", meta.get("image") or spec.get("image", "?"))]
    if meta.get("ips"):
        details.append(("ip", ", ".join(p.split("=", 1)[-1] + f" ({p.split('=', 1)[0]})"
                                        for p in _split(meta["ips"]))))
    elif meta.get("ip"):
        details.append(("ip", meta["ip"]))
    if dom is not None:
        details.append(("size", f"{dom['vcpus']} vCPU, {format_size(dom['memory'])}"))
    stack = row.stack if row else meta.get("stack", "")
    if host:
        details.append(("host", host))
        refs.append((("host",), host))
    return Node("instance", name, state, stack, tuple(details), group=host), refs


def _host(name: str, row, live: Live) -> Node:
    info = live.hosts.get(name)
    if info is None:
        return Node("host", name, "missing", row.stack if row else "")
    details = (("uri", info.uri), ("cores", str(info.vcpus)),
               ("memory", format_size(info.memory) if info.memory else "-"),
               ("instances", str(len(info.instances))), ("accelerator", info.accelerator))
    if not info.up:
        details = (("uri", info.uri), ("why", info.reason[:80]))
    return Node("host", name, info.state, row.stack if row else "", details, group=name)


def _network(name: str, row, live: Live) -> tuple[Node, list]:
    info = live.networks.get(name)
    if info is None:
        return Node("network", name, "missing", row.stack if row else ""), []
    details = [("cidr", str(info.network)), ("mode", info.mode)]
    details += [("bridge", info.bridge)] if info.bridge else []
    # a cloud's nat network: a router to its external network, drawn as a neighbour
    details += [("router to", info.uplink)] if info.uplink else []
    return Node("network", name, row.state if row else "active", row.stack if row else "",
                tuple(details)), [(("network",), info.uplink)] if info.uplink else []


def _volume(kind: str, name: str, row, live: Live, attached: dict[str, str]) \
        -> tuple[Node, list]:
    info = live.volumes.get(name)
    stack = row.stack if row else ""
    if info is None:
        return Node(kind, name, "missing", stack), []
    details = [("size", format_size(info.capacity)),
               ("pool" if live.pooled else "volume type", info.pool)]
    if kind == "volume":
        details.insert(1, ("tier", info.tier or "-"))
    if name in attached:
        details.append(("attached to", attached[name]))
    state = "attached" if name in attached else "available"
    return Node(kind, name, state, stack, tuple(details)), \
        [(("pool",), info.pool)] if live.pooled else []


def _pool(cloud: Services, name: str, row, live: Live) -> Node:
    from nbcloud.core.errors import NotFound
    stack = row.stack if row else ""
    if name not in live.pools:
        try:
            live.pools[name] = cloud.provider.pool_info(name)
        except NotFound:
            live.pools[name] = None
    info = live.pools[name]
    if info is None:
        return Node("pool", name, "missing", stack)
    details = (("path", info.path), ("size", format_size(info.capacity)),
               ("free", format_size(info.available)), ("volumes", str(info.volumes)))
    return Node("pool", name, "active" if info.active else "inactive", stack, details)


def _generic(row) -> tuple[Node, list]:
    """A kind the topology knows nothing special about: its spec names its neighbours."""
    details, refs = [], []
    for key, value in sorted(row.spec.items()):
        if key in REF_FIELDS:
            refs += [(REF_FIELDS[key], n) for n in _names(value)]
        if key in _HIDDEN_FIELDS or isinstance(value, dict):
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        details.append((key.replace("_", " "), shown[:80]))
    return Node(row.kind, row.name, row.state, row.stack, tuple(details)), refs


def build_graph(cloud: Services, stack: str | None = None, live: Live | None = None) -> Graph:
    """The graph of the inventory's resources (of `stack`, if given) as libvirt shows them,
    with the resources they name (the default network, storage pools) as neighbours."""
    rows = cloud.inventory.all()
    live = live if live is not None else read_live(cloud)
    return graph_from(cloud, rows, live, stack)


def graph_from(cloud: Services | None, rows, live: Live, stack: str | None = None) -> Graph:
    by_id = {(r.kind, r.name): r for r in rows}
    attached: dict[str, str] = {}
    for dname, dom in live.domains.items():
        for v in _split(dom["meta"].get("volumes", "")):
            attached[v] = dname
    graph = Graph()
    refs: list[tuple[NodeId, tuple[str, ...], str]] = []

    def make(kind: str, name: str, row) -> None:
        extra: list = []
        if kind == "instance":
            node, extra = _instance(name, row, live)
        elif kind == "network":
            node, extra = _network(name, row, live)
        elif kind in ("volume", "cdrom"):
            node, extra = _volume(kind, name, row, live, attached)
        elif kind == "pool" and cloud is not None:
            node = _pool(cloud, name, row, live)
        elif kind == "host":
            node = _host(name, row, live)
        elif row is not None:
            node, extra = _generic(row)
        else:
            node = Node(kind, name, "missing")
        graph.add(node)
        refs.extend((node.id, kinds, target) for kinds, target in extra)

    for r in rows:
        if stack is None or r.stack == stack:
            make(r.kind, r.name, r)
    # the resources they name, and theirs in turn (an instance's network and volumes, a
    # volume's pool), which a stack's picture needs even when they are not the stack's
    done = 0
    while done < len(refs):
        src, kinds, target = refs[done]
        done += 1
        found = next(((k, target) for k in kinds if (k, target) in graph.nodes), None)
        if found is None:
            found = next(((k, target) for k in kinds if (k, target) in by_id
                          or _is_live(live, k, target)), (kinds[0], target))
            make(found[0], target, by_id.get(found))
        graph.link(src, found)
    return graph


def _is_live(live: Live, kind: str, name: str) -> bool:
    if kind == "volume" or kind == "cdrom":
        info = live.volumes.get(name)
        return info is not None and (info.kind == "cdrom") == (kind == "cdrom")
    return name in {"instance": live.domains, "network": live.networks,
                    "pool": live.pools, "host": live.hosts}.get(kind, {})


# ----- layout -----------------------------------------------------------------------------
class Layout:
    """Stable positions: each node keeps the slot of its column it was first given; a new
    node takes the lowest free slot. The first placement is by kind, then name."""

    def __init__(self, row_gap: float = 1.0, column_gap: float = 1.0):
        self.row_gap, self.column_gap = row_gap, column_gap
        self.slots: dict[NodeId, tuple[int, int]] = {}      # id -> (column, slot)
        self._taken: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}

    def place(self, graph: Graph) -> dict[NodeId, tuple[float, float]]:
        for gone in set(self.slots) - set(graph.nodes):
            column, slot = self.slots.pop(gone)
            self._taken[column].discard(slot)
            self._next[column] = min(self._next[column], slot)
        new = [i for i in graph.nodes if i not in self.slots]
        order = {k: n for n, k in enumerate(STYLES)}
        for node_id in sorted(new, key=lambda i: (order.get(i[0], len(order)),
                                                  graph.nodes[i].group, i)):
            column = style(node_id[0]).column
            taken = self._taken.setdefault(column, set())
            slot = self._next.get(column, 0)
            while slot in taken:
                slot += 1
            taken.add(slot)
            self._next[column] = slot + 1
            self.slots[node_id] = (column, slot)
        return {i: (c * self.column_gap, -s * self.row_gap) for i, (c, s) in self.slots.items()}

    def rows(self) -> int:
        return max((max(t) + 1 for t in self._taken.values() if t), default=0)


# ----- the figure ---------------------------------------------------------------------------
def trace_kinds(graph: Graph) -> list[str]:
    """The kinds that get a trace: every known kind (so that a live figure keeps a fixed
    set of traces), then the unknown ones present, by name."""
    return list(STYLES) + sorted({k for k, _ in graph.nodes} - set(STYLES))


def _label(text: str) -> str:
    return text if len(text) <= LABEL_MAX else text[:LABEL_MAX - 1] + "\u2026"


def route(a: tuple[float, float], b: tuple[float, float], lane: int, gap: float,
          row: float) -> list[tuple[float, float]]:
    """The points of an edge from `a` to `b` (a's column left of b's, or the same): out of
    each node sideways into the gap beside it, along a lane there, and across the columns
    in between (if any) in the channel above b's row."""
    (xa, ya), (xb, yb) = a, b
    offset = (lane % LANES - LANES // 2) * LANE_STEP * gap
    if xa == xb:                                  # one column: round by the gap on its left
        x = xa - gap / 2 + offset
        return [(xa, ya), (x, ya), (x, yb), (xb, yb)]
    out = xa + gap / 2 + offset
    if xb - xa <= gap * 1.01:                     # neighbour columns: one lane between them
        return [(xa, ya), (out, ya), (out, yb), (xb, yb)]
    into = xb - gap / 2 + offset
    channel = yb + (CHANNEL + 0.03 * (lane % 3)) * row
    return [(xa, ya), (out, ya), (out, channel), (into, channel), (into, yb), (xb, yb)]


def traces(graph: Graph, layout: Layout, kinds: list[str] | None = None) -> list[dict]:
    """The figure's data as plain dicts: the edges, then one trace per kind."""
    pos = layout.place(graph)
    ex: list = []
    ey: list = []
    lanes: dict[float, int] = {}                  # gap (its left column's x) -> lanes used
    gap = layout.column_gap
    for a, b in sorted(graph.edges):
        pa, pb = sorted((pos[a], pos[b]))
        side = pa[0] - gap if pa[0] == pb[0] else pa[0]
        lane = lanes.get(side, 0)
        lanes[side] = lane + 1
        for x, y in route(pa, pb, lane, gap, layout.row_gap):
            ex.append(x)
            ey.append(y)
        ex.append(None)
        ey.append(None)
    out = [{"type": "scatter", "mode": "lines", "name": "connections", "x": ex, "y": ey,
            "line": {"width": 1, "color": "#999999"}, "hoverinfo": "skip",
            "showlegend": False}]
    by_kind: dict[str, list[Node]] = {}
    for node in graph.nodes.values():
        by_kind.setdefault(node.kind, []).append(node)
    for kind in kinds or trace_kinds(graph):
        nodes = sorted(by_kind.get(kind, ()), key=lambda n: n.name)
        st = style(kind)
        out.append({
            "type": "scatter", "mode": "markers+text", "name": st.label if kind in STYLES
            else kind, "x": [pos[n.id][0] for n in nodes], "y": [pos[n.id][1] for n in nodes],
            "text": [_label(n.label or n.name) for n in nodes], "textposition": "top center",
            "textfont": {"size": 11},
            "hovertext": [n.hover() for n in nodes], "hoverinfo": "text",
            "customdata": [n.name for n in nodes], "meta": kind,
            "marker": {"symbol": st.symbol, "size": 16,
                       "color": [colour(kind, n.state) for n in nodes],
                       "line": {"width": 1, "color": "#333333"}}})
    return out


#: pixels per row: a marker (16), its label above it (~14) and a channel between the rows
ROW_PIXELS = 56


def figure_layout(layout: Layout, title: str) -> dict:
    rows = max(layout.rows(), 1)
    height = min(2400, 120 + ROW_PIXELS * rows)
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    return {"title": {"text": title}, "height": height, "hovermode": "closest",
            "xaxis": {**axis, "range": [-0.5, OTHER.column + 0.5]},
            "yaxis": {**axis, "range": [-(rows - 1) * layout.row_gap - 0.35,
                                        0.8 * layout.row_gap]},
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "plot_bgcolor": "white",
            "legend": {"orientation": "h", "y": 0, "yanchor": "top"}}
