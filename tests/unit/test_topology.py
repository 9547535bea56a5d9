"""The topology on test:///default: nodes, edges, trace values, hover text, colours, stable
positions, the live figure (refresh, post_run_cell, unload) and `%cloud topology`."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbcloud.providers.libvirt import xml as lx
from nbcloud.ui.topology import (
    LiveTopology,
    figure,
    hooked,
    live_topologies,
    refresh_all,
)
from nbcloud.workflows.topology import (
    CHANNEL,
    LABEL_MAX,
    STATE_COLOURS,
    STYLES,
    Graph,
    Layout,
    Node,
    build_graph,
    colour,
)


def _domain(cloud, name: str, networks: str, volumes: str = "", ip: str = "10.213.9.5",
            start: bool = True) -> None:
    """A domain marked as nbcloud's (as `instance create` leaves it), recorded too."""
    meta = {"kind": "instance", "stack": "adhoc", "image": "tiny", "flavor": "t.nano",
            "networks": networks, "volumes": volumes, "ip": ip,
            "ips": ",".join(f"{n}={ip}" for n in networks.split(",")), "key": "default"}
    dom = cloud.provider.conn.defineXML(lx.domain_xml(lx.DomainDef(
        name=name, vcpus=1, memory=128 << 20, domain_type="test",
        boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(), metadata=meta)))
    if start:
        dom.create()
    cloud.inventory.put(cloud.uri, "instance", name, state="running", uuid=dom.UUIDString(),
                        spec={"image": "tiny", "flavor": "t.nano",
                              "networks": networks.split(",")})


def _drop_domain(cloud, name: str) -> None:
    dom = cloud.provider.conn.lookupByName(name)
    if dom.isActive():
        dom.destroy()
    dom.undefine()


@pytest.fixture
def world(test_cloud, unique):
    """A network, an ssd volume, an ISO (cdrom) and a running instance using all three."""
    c = test_cloud
    names = {"net": unique("tp-net"), "vol": unique("tp-vol"), "iso": unique("tp-iso"),
             "vm": unique("tp-vm")}
    octet = int(names["net"].removeprefix("tp-net")) % 200
    c.networks.create(names["net"], f"10.213.{octet}.0/24", "isolated")
    c.volumes.create(names["vol"], "1G", "ssd")
    pool = c.provider.ensure_tier_pool("ssd")
    c.provider.create_volume(pool, f"{names['iso']}.iso", 1 << 20, "raw")
    c.volumes.record(names["iso"], "attached", "cdrom", pool=pool, attached_to=names["vm"])
    _domain(c, names["vm"], names["net"], f"{names['vol']},{names['iso']}")
    yield c, names
    _drop_domain(c, names["vm"])
    c.provider.delete_volume(pool, f"{names['iso']}.iso")
    c.volumes.delete(names["vol"])
    c.networks.delete(names["net"])


def test_nodes_and_edges_follow_libvirt(world):
    cloud, n = world
    g = build_graph(cloud.services)
    vm, net, vol, iso = (("instance", n["vm"]), ("network", n["net"]), ("volume", n["vol"]),
                         ("cdrom", n["iso"]))
    pool = ("pool", "nbcloud-ssd")
    assert {vm, net, vol, iso, pool} <= set(g.nodes)
    assert {tuple(sorted(e)) for e in [(vm, net), (vm, vol), (vm, iso), (vol, pool),
                                        (iso, pool)]} <= g.edges
    # nothing else touches the instance: its edges are exactly what its domain names
    assert {e for e in g.edges if vm in e} == {tuple(sorted(p)) for p in
                                              [(vm, net), (vm, vol), (vm, iso)]}
    assert g.nodes[vm].state == "running"
    assert g.nodes[vol].state == "attached" and g.nodes[iso].state == "attached"
    assert dict(g.nodes[net].details)["mode"] == "isolated"
    assert dict(g.nodes[vol].details) == {"size": "1G", "tier": "ssd", "pool": "nbcloud-ssd",
                                          "attached to": n["vm"]}


def test_trace_values_hover_and_colours(world):
    cloud, n = world
    fig = figure(build_graph(cloud.services))
    by_kind = {t.meta: t for t in fig.data[1:]}
    assert list(by_kind) == list(STYLES)        # one trace per known kind, always
    inst = by_kind["instance"]
    i = list(inst.text).index(n["vm"])
    assert inst.marker.symbol == STYLES["instance"].symbol
    assert inst.marker.color[i] == STYLES["instance"].colour    # running: the kind's colour
    assert inst.x[i] == STYLES["instance"].column
    hover = inst.hovertext[i]
    for part in (f"<b>{n['vm']}</b> (instance)", "state: running", "flavor: t.nano",
                 f"ip: 10.213.9.5 ({n['net']})", "1 vCPU, 128M"):
        assert part in hover
    vols = by_kind["volume"]
    assert "size: 1G" in vols.hovertext[list(vols.text).index(n["vol"])]
    # the edges trace: one polyline per edge, from node to node
    g = build_graph(cloud.services)
    pos = {(t.meta, name): (x, y) for t in fig.data[1:]
           for name, x, y in zip(t.text, t.x, t.y)}
    lines = segments(fig.data[0])
    assert len(lines) == len(g.edges)
    assert {frozenset((line[0], line[-1])) for line in lines} == \
        {frozenset((pos[a], pos[b])) for a, b in g.edges}


def segments(trace) -> list[list[tuple]]:
    """The polylines of a lines trace (points between the None separators)."""
    out, cur = [], []
    for x, y in zip(trace.x, trace.y):
        if x is None:
            out.append(cur)
            cur = []
        else:
            cur.append((x, y))
    return out


def test_edges_run_at_right_angles_between_the_rows_and_columns():
    """Out of a node sideways, along a lane between the columns, across skipped columns in
    a channel between two rows: never on a row's line through another column, never
    through the space above a marker where its label is."""
    g = Graph()
    g.add(Node("floating", "fip", "active"))
    g.add(Node("instance", "vm", "running"))
    g.add(Node("network", "lab", "active"))
    g.add(Node("ipool", "pool", "active"))
    g.link(("floating", "fip"), ("instance", "vm"))
    g.link(("network", "lab"), ("instance", "vm"))
    g.link(("ipool", "pool"), ("network", "lab"))
    fig = figure(g)
    lines = segments(fig.data[0])
    fip, vm = (STYLES["floating"].column, 0.0), (STYLES["instance"].column, 0.0)
    lab, pool = (STYLES["network"].column, 0.0), (STYLES["ipool"].column, -1.0)
    for line in lines:                              # right angles only
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in zip(line, line[1:])), line
    hop = next(line for line in lines if line[0] == fip)
    assert hop[-1] == vm and len(hop) == 6
    channel = hop[2][1]
    assert hop[3][1] == channel and CHANNEL <= channel <= CHANNEL + 0.1  # between rows
    assert all(fip[0] < x < vm[0] for x, _ in hop[1:-1])
    near = next(line for line in lines if line[0] == lab)        # neighbour columns
    assert near[-1] == vm and lab[0] < near[1][0] < vm[0]
    same = next(line for line in lines if {line[0], line[-1]} == {lab, pool})
    assert all(x < lab[0] for x, _ in same[1:-1])               # round by the left gap
    # labels sit above their markers, cut to LABEL_MAX characters
    assert all(t.textposition == "top center" for t in fig.data[1:])
    g.add(Node("instance", "a-very-long-instance-name", "running"))
    texts = [x for t in figure(g).data[1:] for x in t.text]
    assert "a-very-long-\u2026" in texts and max(map(len, texts)) <= LABEL_MAX


def test_stopped_and_missing_instances_change_colour(world):
    cloud, n = world
    cloud.provider.conn.lookupByName(n["vm"]).destroy()
    g = build_graph(cloud.services)
    assert g.nodes[("instance", n["vm"])].state == "stopped"
    cloud.inventory.put(cloud.uri, "instance", "tp-ghost", state="running",
                        spec={"networks": [n["net"]]})
    g = build_graph(cloud.services)
    ghost = g.nodes[("instance", "tp-ghost")]
    assert ghost.state == "missing"
    assert colour("instance", "missing") == STATE_COLOURS["missing"]
    assert (("instance", "tp-ghost"), ("network", n["net"])) in g.edges
    cloud.inventory.remove(cloud.uri, "instance", "tp-ghost")


def test_other_kinds_are_drawn_with_edges_from_their_spec(world):
    cloud, n = world
    inv, uri = cloud.inventory, cloud.uri
    inv.put(uri, "secgroup", "tp-sg", state="active", spec={"instances": [n["vm"]]})
    inv.put(uri, "loadbalancer", "tp-lb", state="active",
            spec={"network": n["net"], "members": [n["vm"]], "port": 80})
    inv.put(uri, "floating", "tp-fip", state="active",
            spec={"instance": n["vm"], "host_port": 2222})
    inv.put(uri, "ipool", "tp-ip", state="active", spec={"members": [n["vm"]]})
    inv.put(uri, "gadget", "tp-gz", state="odd", spec={"instance": n["vm"]})
    try:
        g = build_graph(cloud.services)
        vm = ("instance", n["vm"])
        for kind, name in [("secgroup", "tp-sg"), ("loadbalancer", "tp-lb"),
                           ("floating", "tp-fip"), ("ipool", "tp-ip"), ("gadget", "tp-gz")]:
            assert tuple(sorted([(kind, name), vm])) in g.edges
        assert (("loadbalancer", "tp-lb"), ("network", n["net"])) in g.edges
        assert "host port: 2222" in g.nodes[("floating", "tp-fip")].hover()
        fig = figure(g)
        by_kind = {t.meta: t for t in fig.data[1:]}
        assert by_kind["loadbalancer"].marker.symbol == STYLES["loadbalancer"].symbol
        assert list(by_kind["gadget"].text) == ["tp-gz"]   # an unknown kind: own trace
    finally:
        for kind, name in [("secgroup", "tp-sg"), ("loadbalancer", "tp-lb"),
                           ("floating", "tp-fip"), ("ipool", "tp-ip"), ("gadget", "tp-gz")]:
            inv.remove(uri, kind, name)


def test_stack_filter_keeps_the_stack_and_what_it_names(world):
    cloud, n = world
    cloud.inventory.put(cloud.uri, "volume", n["vol"], state="attached", stack="tp-s",
                        spec={"pool": "nbcloud-ssd"})
    g = build_graph(cloud.services, stack="tp-s")
    assert set(g.nodes) == {("volume", n["vol"]), ("pool", "nbcloud-ssd")}
    assert g.edges == {(("pool", "nbcloud-ssd"), ("volume", n["vol"]))}


def _graph(names: list[str]) -> Graph:
    g = Graph()
    g.add(Node("network", "lab", "active"))
    for name in names:
        g.add(Node("instance", name, "running"))
        g.link(("instance", name), ("network", "lab"))
    return g


def test_layout_is_stable_when_a_node_comes_or_goes():
    layout = Layout()
    before = layout.place(_graph(["web-1", "web-2", "web-3"]))
    after = layout.place(_graph(["aaa", "web-1", "web-2", "web-3"]))  # sorts first
    assert {k: after[k] for k in before} == before
    assert after[("instance", "aaa")] == (STYLES["instance"].column, -3.0)
    gone = layout.place(_graph(["aaa", "web-1", "web-3"]))
    assert gone[("instance", "web-3")] == before[("instance", "web-3")]
    again = layout.place(_graph(["aaa", "web-1", "web-3", "zzz"]))
    assert again[("instance", "zzz")] == before[("instance", "web-2")]  # the freed slot
    # a fresh layout is deterministic: kind, then name
    assert Layout().place(_graph(["b", "a"]))[("instance", "a")] == \
        (STYLES["instance"].column, 0.0)


def test_live_topology_refreshes_in_place(test_cloud, unique):
    topo = LiveTopology(test_cloud, widget=True)
    try:
        fig = topo.figure
        assert type(fig).__name__ == "FigureWidget"
        assert topo.refresh_if_changed() is False      # nothing changed: no redraw
        name = unique("tp-lv")
        test_cloud.volumes.create(name, "1G", "hdd")
        assert topo.refresh_if_changed() is True
        assert topo.figure is fig                       # the same widget, updated
        vols = next(t for t in fig.data if t.meta == "volume")
        assert name in vols.text
        assert ("pool", "nbcloud-hdd") in topo.graph.nodes
        test_cloud.volumes.delete(name)
        topo.refresh()                                  # what the monitor thread calls
        assert name not in next(t for t in fig.data if t.meta == "volume").text
        assert topo.refreshes == 2
        # a state change the inventory does not see (the monitor's case)
        vm = unique("tp-lvm")
        _domain(test_cloud, vm, "default", start=True)
        topo.refresh()
        test_cloud.provider.conn.lookupByName(vm).destroy()
        assert topo.refresh_if_changed() is False       # the inventory still says running
        assert refresh_all(test_cloud) == 1
        inst = next(t for t in fig.data if t.meta == "instance")
        assert inst.marker.color[list(inst.text).index(vm)] == STATE_COLOURS["stopped"]
        _drop_domain(test_cloud, vm)
    finally:
        topo.close()


def test_magic_topology_follows_cells_and_unload_unhooks(ip, unique):
    topo = ip.run_line_magic("cloud", "topology")
    assert isinstance(topo, LiveTopology) and topo in live_topologies() and hooked()
    name = unique("tp-mv")
    ip.run_cell(f"%cloud volume create {name} --size 1G")   # post_run_cell redraws
    assert ("volume", name) in topo.graph.nodes and topo.refreshes == 1
    assert name in next(t for t in topo.figure.data if t.meta == "volume").text
    ip.run_cell(f"%cloud volume delete {name}")
    assert ("volume", name) not in topo.graph.nodes
    ip.run_line_magic("unload_ext", "nbcloud")
    assert not hooked() and live_topologies() == []
    assert not any(getattr(cb, "__module__", "") == "nbcloud.ui.topology"
                   for cb in ip.events.callbacks["post_run_cell"])
    ip.run_line_magic("load_ext", "nbcloud")   # the fixture unloads it again


def test_magic_topology_refuses_a_bad_stack_name(ip):
    with pytest.raises(UsageError, match="stack name 'Bad!' is not allowed"):
        ip.run_line_magic("cloud", "topology --stack Bad!")
