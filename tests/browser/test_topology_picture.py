"""The topology as a reader sees it: a stack of twenty resources of every kind drawn by
plotly.js in Debian's headless Chromium, measured on the page (tests/browser/
figure_geometry.mjs): no edge crosses a label or runs through a node it does not join, no
label or node overlaps another, no label is cut off; at a narrow and a wide page."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nbcloud.ui.topology import figure
from nbcloud.workflows.topology import Graph, Layout, Node
from tests.needs import missing, program

HERE = Path(__file__).resolve().parent


def twenty() -> Graph:
    """Networks, a balancer, a floating address, a security group, an instance pool, eight
    instances (one stopped, one with a long name), four volumes on two storage pools."""
    g = Graph()

    def add(kind, name, state="active"):
        g.add(Node(kind, name, state))
        return kind, name
    net, lab = add("network", "nbcloud"), add("network", "lab-net")
    pools = add("pool", "nbcloud-ssd"), add("pool", "nbcloud-images")
    lb, fip = add("loadbalancer", "front"), add("floating", "web-1-80")
    sg, pool = add("secgroup", "web"), add("ipool", "api")
    names = ["web-1", "web-2", "web-3", "web-4", "web-5", "a-very-long-instance-name"]
    for i, name in enumerate(names):
        vm = add("instance", name, "running")
        g.link(vm, lab if i % 2 else net)
        g.link(sg, vm)
        if i < 3:
            g.link(lb, vm)
        if i < 4:
            vol = add("volume", f"data-{i + 1}")
            g.link(vm, vol)
            g.link(vol, pools[i % 2])
    for i in (1, 2):
        member = add("instance", f"api-{i}", "stopped" if i == 2 else "running")
        g.link(pool, member)
        g.link(member, lab)
    g.link(pool, lab)
    g.link(lb, lab)
    g.link(fip, ("instance", "web-1"))
    assert len(g.nodes) == 20
    return g


@pytest.mark.parametrize("width", [760, 1200])
def test_twenty_resources_are_drawn_without_crossings_or_overlaps(tmp_path, width):
    node = program("node", "the browser tier drives Chromium with Node.js")
    chromium = program("chromium", "Debian package chromium (scripts/setup.sh installs it)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing("playwright-core is not installed in tests/browser (scripts/setup.sh)")
    page = tmp_path / "topology.html"
    figure(twenty(), Layout(), title="a stack of twenty").write_html(
        page, include_plotlyjs=True, full_html=True)
    shot = tmp_path / f"topology-{width}.png"
    job = {"url": page.as_uri(), "screenshot": str(shot), "width": width,
           "chromium": chromium}
    done = subprocess.run([node, str(HERE / "figure_geometry.mjs"), json.dumps(job)],
                          capture_output=True, text=True, timeout=120, cwd=HERE)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    print(f"{width}px: {seen['markers']} nodes, {seen['edges']} edges, picture {shot}")
    assert seen["markers"] == 20 and seen["edges"] == 30 and len(seen["labels"]) == 20
    assert not seen["crossings"], seen["crossings"]
    assert not seen["overlaps"], seen["overlaps"]
    assert not seen["clipped"], seen["clipped"]
    assert shot.stat().st_size > 10_000
