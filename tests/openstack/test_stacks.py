"""A stack on a real OpenStack: applied, re-applied as a no-op, changed behind nbcloud's
back (the server deleted through the API, as `openstack server delete` does), the drift
seen, repaired by apply, and destroyed with nothing left."""
from __future__ import annotations

from tests.openstack.conftest import servers

STACK = "os-stack"
BODY = """
network:
  os-snet: {cidr: 10.81.0.0/24, mode: nat}
instance:
  os-s1: {image: tiny, flavor: m.nano, network: [os-snet]}
"""


def _rows(cloud):
    return sorted((r.kind, r.name) for r in cloud.ctx.inventory.all() if r.stack == STACK)


def test_apply_noop_drift_repair_destroy(os_cloud, admin_conn):
    stacks = os_cloud.stacks
    stacks.destroy(STACK)
    plan = stacks.apply(STACK, BODY)
    assert plan.counts()["create"] == 2
    assert _rows(os_cloud) == [("instance", "os-s1"), ("network", "os-snet")]
    assert os_cloud.instances.get("os-s1").ssh("hostname").strip() == "os-s1"
    (nova,) = servers(admin_conn, "os-s1")
    assert nova.metadata["nbcloud:stack"] == STACK
    assert not stacks.apply(STACK, BODY), "an unchanged cell changes nothing"
    # behind nbcloud's back
    admin_conn.compute.delete_server(nova)
    admin_conn.compute.wait_for_delete(nova, interval=1, wait=300)
    drift = {(row[0], row[1]): row[3] for row in stacks.drift().rows}
    assert "deleted behind nbcloud's back" in drift[("instance", "os-s1")]
    plan = stacks.plan(STACK, BODY)
    assert [(a.op, a.kind, a.name) for a in plan.actions] == [("create", "instance", "os-s1")]
    stacks.apply(STACK, BODY)
    assert os_cloud.instances.get("os-s1").ssh("hostname").strip() == "os-s1"
    assert not stacks.plan(STACK, BODY)
    # destroy: no server, no network, no router, no floating IP of the stack's left
    address = os_cloud.instances.get("os-s1").meta["ip"]
    stacks.destroy(STACK)
    assert servers(admin_conn, "os-s1") == []
    assert not list(admin_conn.network.networks(name="os-snet"))
    assert not list(admin_conn.network.routers(name="nbcloud-os-snet"))
    assert address not in {f.floating_ip_address for f in admin_conn.network.ips()}
    # nor the floating IP of the server deleted behind nbcloud's back (Nova keeps it)
    assert not [f for f in admin_conn.network.ips() if f.description == "nbcloud: os-s1"]
    assert _rows(os_cloud) == []
