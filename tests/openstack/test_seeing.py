"""Seeing the cloud on a real OpenStack: servers reach each other by name (Neutron's
dns_name on their ports, answered by the network's DNS); the topology drawn from Nova's
servers and Neutron's ports, networks and routers; the monitor from Nova's server
diagnostics for an admin, states alone (and a note saying why) for a member."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from nbcloud.core.errors import Unsupported
from nbcloud.workflows.topology import build_graph
from tests.waiting import wait_for
from tests.openstack.conftest import ADMIN, fresh_instance, servers

A, B, VOL = "ok-dns-a", "ok-dns-b", "ok-seen"


@pytest.fixture(scope="module")
def pair(os_cloud):
    with ExitStack() as made, ThreadPoolExecutor(2) as pool:
        yield tuple(pool.map(lambda n: made.enter_context(
            fresh_instance(os_cloud, n, flavor="m.nano")), (A, B)))


def test_a_server_reaches_another_by_name(os_cloud, pair, admin_conn):
    a, b = pair
    b_ip = b.ips["nbcloud"]
    (port,) = admin_conn.network.ports(device_id=b.uuid)
    assert port.dns_name == B
    (fqdn,) = {x["fqdn"] for x in port.dns_assignment}
    assert fqdn.startswith(f"{B}.") and fqdn.endswith(".")
    for name in (B, fqdn.rstrip(".")):
        first = a.ssh(f"ping -c 1 -W 3 {name} | head -1")
        assert f"({b_ip})" in first, first
    assert os_cloud.dns.resolve("nbcloud", B) == b_ip
    with pytest.raises(Unsupported, match="dns_name") as err:
        os_cloud.dns.add("nbcloud", "ok-alias", b_ip)
    assert "\n" not in str(err.value)


def test_the_topology_is_neutrons(os_cloud, pair, admin_conn):
    a, _b = pair
    os_cloud.volumes.create(VOL, "1G", tier="ssd").attach(A)
    try:
        graph = build_graph(os_cloud.services)
        nodes = {(n.kind, n.name): n for n in graph.nodes.values()}
        inst = nodes[("instance", A)]
        assert inst.state == "running"
        assert dict(inst.details)["ip"].startswith(a.ips["nbcloud"])
        net = dict(nodes[("network", "nbcloud")].details)
        # what Neutron has: the network's router leads to the external network
        router = next(r for r in admin_conn.network.routers(name="nbcloud-nbcloud",
                                                            project_id=os_cloud.provider
                                                            .project_id))
        public = admin_conn.network.get_network(router.external_gateway_info["network_id"])
        assert (net["mode"], net["router to"]) == ("nat", public.name)
        assert dict(nodes[("network", public.name)].details)["mode"] == "external"
        vol = dict(nodes[("volume", VOL)].details)
        assert (vol["volume type"], vol["attached to"]) == ("ssd", A)
        for edge in ((("instance", A), ("network", "nbcloud")),
                     (("network", "nbcloud"), ("network", public.name)),
                     (("instance", A), ("volume", VOL))):
            assert tuple(sorted(edge)) in graph.edges, edge
        assert not [n for n in nodes if n[0] == "pool"]
    finally:
        os_cloud.volumes.detach(VOL)
        os_cloud.volumes.delete(VOL)


def test_a_members_monitor_has_states_and_says_why(os_cloud, pair):
    mon = os_cloud.monitor
    mon.interval = 1.0
    mon.watch(A)
    try:
        wait_for(lambda: mon.ticks >= 3, 60, "three ticks")
        sample = mon.latest[A]
        assert sample.state == "running" and sample.cpu is None
        assert mon.last_error is None
        assert "admins only" in mon.note
    finally:
        mon.stop()


def test_an_admins_monitor_reads_novas_diagnostics(tmp_path, admin_conn):
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    admin = Cloud.openstack(ADMIN, inventory=Inventory(tmp_path / "inv.sqlite"))
    try:
        admin.build_tiny()
        with fresh_instance(admin, "ok-mon", flavor="c.nano") as vm:
            assert servers(admin_conn, "ok-mon")[0].project_id == admin.provider.project_id
            mon = admin.monitor
            mon.interval = 1.0
            mon.watch("ok-mon")
            try:
                wait_for(lambda: mon.ticks >= 2, 60, "two ticks")
                vm.ssh("(end=$(( $(date +%s) + 6 )); while [ $(date +%s) -lt $end ]; do :;"
                       " done) >/dev/null 2>&1 &")
                time.sleep(7)
                vm.ssh("dd if=/dev/zero of=/dev/vda bs=1M count=1 oflag=direct 2>/dev/null;"
                       " true")
                time.sleep(3)
                assert mon.note == ""
            finally:
                mon.stop()
            history = mon.history("ok-mon", since=120)
            peak = max((s.cpu or 0) for s in history)
            assert peak > 20, [s.cpu for s in history]
            assert any((s.net_rx or 0) > 0 for s in history)   # the SSH sessions
            assert any(s.disk_wr is not None for s in history)
    finally:
        admin.close()
