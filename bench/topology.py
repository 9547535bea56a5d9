"""Building a topology figure of 100 / 500 / 1000 nodes, beside a plain Plotly figure of the
same points measured in the same run.

Three rows per size:
- synthetic: a graph model (instances on networks, volumes on instances and pools) ->
  `topology.figure`, layout included; the baseline is `go.Figure` with one scatter trace of
  the same points and one line trace of the same edges, built from ready coordinate lists
  as anyone would write it.
- test:///default: that many nodes as libvirt objects (marked domains recorded in the
  inventory, on networks): `LiveTopology(cloud)` from scratch (inventory read, bulk libvirt
  read, graph, figure); the baseline is the raw libvirt listing (listAllDomains + XMLDesc
  each, networks, pools) plus the plain figure.
- refresh: redrawing that live topology in place (a FigureWidget, `batch_update`); the
  baseline is the raw listing plus a FigureWidget whose one trace gets the new points.
Target (issue 5): a 500-node figure in <= 300 ms.

    .venv/bin/python bench/topology.py [--runs 7] [--sizes 100 500 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt
import plotly
import plotly.graph_objects as go
from timing import median_ms  # noqa: E402  (bench/timing.py)

from nbcloud.api import Cloud
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt import xml as lx
from nbcloud.ui.topology import LiveTopology, figure
from nbcloud.workflows.topology import Graph, Layout, Node

RESULTS = Path(__file__).parent / "results"
URI = "test:///default"
TARGET_MS = {500: 300}


def synthetic(n: int) -> Graph:
    """n nodes: 1 network per 20, 2 pools, then 2/3 instances and 1/3 volumes."""
    g = Graph()
    nets, pools = max(1, n // 20), 2
    for i in range(nets):
        g.add(Node("network", f"net-{i}", "active",
                   details=(("cidr", f"10.{i}.0.0/24"), ("mode", "nat"))))
    for p in range(pools):
        g.add(Node("pool", f"pool-{p}", "active", details=(("path", f"/p{p}"),)))
    rest = n - nets - pools
    instances = rest * 2 // 3
    for i in range(instances):
        g.add(Node("instance", f"vm-{i}", ("running", "stopped")[i % 7 == 0],
                   details=(("flavor", "t.nano"), ("ip", f"10.0.{i // 250}.{i % 250}"))))
        g.link(("instance", f"vm-{i}"), ("network", f"net-{i % nets}"))
    for i in range(rest - instances):
        g.add(Node("volume", f"vol-{i}", "attached", details=(("size", "1G"),)))
        g.link(("volume", f"vol-{i}"), ("instance", f"vm-{i % instances}"))
        g.link(("volume", f"vol-{i}"), ("pool", f"pool-{i % pools}"))
    assert len(g.nodes) == n
    return g


def plain_figure(points: list, edges: list, widget: bool = False):
    """What one writes without nbcloud: one scatter of the points, one line trace."""
    ex, ey = [], []
    for (xa, ya), (xb, yb) in edges:
        ex += (xa, xb, None)
        ey += (ya, yb, None)
    cls = go.FigureWidget if widget else go.Figure
    return cls(data=[go.Scatter(x=ex, y=ey, mode="lines", hoverinfo="skip"),
                     go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points],
                                mode="markers+text", text=[p[2] for p in points],
                                hovertext=[p[3] for p in points])])


def coordinates(g: Graph) -> tuple[list, list]:
    pos = Layout().place(g)
    points = [(*pos[i], node.name, node.hover()) for i, node in g.nodes.items()]
    return points, [(pos[a], pos[b]) for a, b in g.edges]


def populate(cloud: Cloud, n: int) -> None:
    """Grow test:///default to n nodes of ours: 1 network per 50, the rest marked domains
    recorded in the inventory (as `instance create` leaves them; nothing boots)."""
    conn = cloud.provider.conn
    nets = max(1, n // 50)
    have = {r.name for r in cloud.inventory.resources(cloud.uri, "network")}
    for i in range(nets):
        if f"bn{i}" not in have:
            cloud.networks.create(f"bn{i}", f"10.{100 + i}.0.0/24", "isolated",
                                  stack="bench")
    existing = len(cloud.inventory.resources(cloud.uri, "instance"))
    for i in range(existing, n - nets):
        name, net = f"bi{i}", f"bn{i % nets}"
        meta = {"kind": "instance", "stack": "bench", "image": "tiny", "flavor": "t.nano",
                "networks": net, "volumes": "", "ip": f"10.{100 + i % nets}.0.{i % 250 + 2}",
                "key": "default"}
        dom = conn.defineXML(lx.domain_xml(lx.DomainDef(
            name=name, vcpus=1, memory=128 << 20, domain_type="test",
            boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(), metadata=meta)))
        if i % 3:
            dom.create()
        cloud.inventory.put(cloud.uri, "instance", name, state="running", stack="bench",
                            uuid=dom.UUIDString(), spec={"image": "tiny", "flavor": "t.nano",
                                                         "networks": [net]})


def raw_live(conn: libvirt.virConnect) -> None:
    """The libvirt calls underneath, without nbcloud: one listing per kind, XML of each."""
    for dom in conn.listAllDomains(0):
        dom.XMLDesc(0)
    conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
    for net in conn.listAllNetworks(0):
        net.XMLDesc(0)
    for pool in conn.listAllStoragePools(0):
        pool.listAllVolumes(0)


def row(what: str, n: int, ours: float, raw: float, raw_what: str) -> dict:
    target = TARGET_MS.get(n)
    return {"what": what, "nodes": n, "nbcloud_ms": ours, "raw_ms": raw, "raw": raw_what,
            "ratio": round(ours / raw, 2) if raw else None, "target_ms": target,
            "met": None if target is None else ours <= target}


def bench_synthetic(n: int, runs: int) -> dict:
    g = synthetic(n)
    points, edges = coordinates(g)
    return row("synthetic graph -> figure", n, median_ms(lambda: figure(g, Layout()), runs),
               median_ms(lambda: plain_figure(points, edges), runs),
               "go.Figure, 1 scatter of the points + 1 line trace")


def bench_live(cloud: Cloud, n: int, runs: int) -> list[dict]:
    populate(cloud, n)
    topo = LiveTopology(cloud, widget=True, live=False)
    assert len(topo.graph.nodes) == n, (len(topo.graph.nodes), n)
    points, edges = coordinates(topo.graph)
    conn = cloud.provider.conn
    raw_widget = plain_figure(points, edges, widget=True)

    def raw_refresh():
        raw_live(conn)
        with raw_widget.batch_update():
            raw_widget.data[1].update(x=[p[0] for p in points], y=[p[1] for p in points])
    return [
        row("test:///default -> LiveTopology", n,
            median_ms(lambda: LiveTopology(cloud, widget=False, live=False), runs),
            median_ms(lambda: (raw_live(conn), plain_figure(points, edges)), runs),
            "raw libvirt listing + go.Figure of the points"),
        row("refresh in place (FigureWidget)", n, median_ms(topo.refresh, runs),
            median_ms(raw_refresh, runs), "raw listing + batch_update of 1 trace")]


def cleanup(cloud: Cloud) -> None:
    conn = cloud.provider.conn
    for dom in conn.listAllDomains(0):
        if dom.name().startswith("bi"):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for net in conn.listAllNetworks(0):
        if net.name().startswith("bn"):
            net.destroy()
            net.undefine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    args = ap.parse_args()
    rows = [bench_synthetic(n, args.runs) for n in args.sizes]
    tmp = Path(tempfile.mkdtemp(prefix="nbcloud-bench-"))
    cloud = Cloud(URI, inventory=Inventory(tmp / "topology.sqlite"))
    try:
        for n in args.sizes:
            rows += bench_live(cloud, n, args.runs)
    finally:
        cleanup(cloud)
        cloud.close()
        shutil.rmtree(tmp)

    result = {"benchmark": "topology figure build", "runs": args.runs,
              "statistic": "median", "cores": os.cpu_count(),
              "machine": f"{platform.node()} {platform.release()}",
              "python": platform.python_version(), "plotly": plotly.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M"),
              "load_1m": os.getloadavg()[0], "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "topology.json").write_text(json.dumps(result, indent=1))
    print(f"median of {args.runs} runs, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"  {'':<34} {'nodes':>5} {'nbcloud ms':>10} {'raw ms':>8} {'ratio':>6} target")
    for r in rows:
        target = f"<={r['target_ms']} {'met' if r['met'] else 'MISSED'}" \
            if r["target_ms"] else ""
        print(f"  {r['what']:<34} {r['nodes']:>5} {r['nbcloud_ms']:>10} {r['raw_ms']:>8} "
              f"{r['ratio']:>6} {target}")
    return 0 if all(r["met"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
