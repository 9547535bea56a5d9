"""Placement over three hosts: `--count` spreads, names resolve across hosts over the
networks' VXLAN, a full cloud refuses in one line and makes nothing."""
from __future__ import annotations

import time

import pytest

from nbcloud.core.errors import NoCapacity
from tests.hosts.conftest import domains_on

WEB = "mh-web"


@pytest.fixture(scope="module")
def spread(cloud, fabric):
    """mh-web-1..3, one create with --count 3, SSH-ready."""
    insts = cloud.instances.create(WEB, count=3, flavor="t.nano")
    yield {i.name: i for i in insts}
    for inst in insts:
        cloud.instances.delete(inst.name)


def test_count_spreads_one_instance_per_host(spread, cloud, fabric):
    where = {name: cloud.provider.host_of(name) for name in spread}
    assert sorted(where.values()) == ["mh-h1", "mh-h2", "mh-h3"], where
    for i, host in enumerate(fabric.hosts, start=1):       # what each daemon has
        mine = [n for n in domains_on(fabric, i) if n.startswith(WEB)]
        assert mine == [n for n, h in where.items() if h == host.name]
    for name, inst in spread.items():                       # each answers SSH
        assert inst.ssh("hostname").strip() == name
    rows = {r.name: r.spec["host"] for r in cloud.ctx.inventory.all("instance")}
    assert {n: rows[n] for n in spread} == where


def test_ls_and_the_topology_say_each_instances_host(spread, cloud):
    from nbcloud.ui.widgets.ls import inventory_rows
    from nbcloud.workflows.topology import build_graph
    where = {name: cloud.provider.host_of(name) for name in spread}
    rows = {r.name: r for r in inventory_rows(cloud, "instance")}
    for name, host in where.items():
        assert rows[name].state == "running"
        assert rows[name].detail.startswith(f"on {host} "), rows[name]
    graph = build_graph(cloud.services)
    assert {n.name: n.state for n in graph.of_kind("host")} == {
        "mh-h1": "up", "mh-h2": "up", "mh-h3": "up"}
    for name, host in where.items():
        assert tuple(sorted([("host", host), ("instance", name)])) in graph.edges
        assert graph.nodes[("instance", name)].group == host


def test_the_monitor_samples_every_host(spread, cloud):
    """One tick reads each host's daemon: a busy loop on the third host's guest shows as
    that guest's CPU, the others stay idle, and every guest's memory is read."""
    by_host = {cloud.provider.host_of(n): n for n in spread}
    busy = by_host["mh-h3"]
    pid = spread[busy].ssh("(while :; do :; done) >/dev/null 2>&1 & echo $!").strip()
    mon = cloud.monitor
    try:
        mon.watch(*spread, start=False)
        ticks = []
        for _ in range(4):
            ticks.append(mon.tick())
            time.sleep(1.0)
    finally:
        mon.unwatch(*spread)
        spread[busy].ssh(f"kill {pid}", check=False)
    last = ticks[-1]
    assert {n: last[n].state for n in spread} == dict.fromkeys(spread, "running")
    assert all(last[n].mem_used and last[n].mem_used > 32 << 20 for n in spread), last
    cpu = {n: max(t[n].cpu or 0 for t in ticks[1:]) for n in spread}
    print("CPU % by instance over the ticks:", cpu)
    assert cpu[busy] > 30 and cpu[busy] > 2 * max(v for n, v in cpu.items() if n != busy)


def test_names_resolve_and_answer_across_hosts(spread, cloud):
    by_host = {cloud.provider.host_of(n): i for n, i in spread.items()}
    a, b = by_host["mh-h2"], by_host["mh-h3"]
    # dnsmasq of the home host answers for a guest on mh-h2 about one on mh-h3
    answer = a.ssh(f"nslookup {b.name}", check=False)
    assert b.ip in answer, answer
    out = a.ssh(f"ping -c 3 -W 2 {b.name}", check=False)
    assert " 0% packet loss" in out, out


def test_a_full_cloud_refuses_in_one_line_and_makes_nothing(spread, cloud, fabric):
    hosts = {h.name: h for h in fabric.hosts}
    try:
        for name, host in hosts.items():       # 2 cores x 0.5: one vCPU per host, taken
            cloud.hosts.add(name, host.uri, cpu_ratio=0.5)
        with pytest.raises(NoCapacity) as caught:
            cloud.instances.create("mh-extra", flavor="t.nano", wait=False)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith("no host has room for mh-extra (1 vCPU, 128 MiB): ")
        for name in hosts:
            assert f"{name} has 0 of 1 vCPUs free" in message
        assert all("mh-extra" not in domains_on(fabric, i) for i in (1, 2, 3))
        assert cloud.ctx.inventory.get("instance", "mh-extra") is None
        op = cloud.ctx.inventory.operations(1)[0]
        assert (op["verb"], op["name"], op["result"]) == ("create", "mh-extra", "failed")
    finally:
        for name, host in hosts.items():
            cloud.hosts.add(name, host.uri)
