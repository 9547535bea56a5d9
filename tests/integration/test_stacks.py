"""Stacks on the real daemon: apply a stack of 1 network, 2 volumes and 3 instances;
re-apply (no-op, asserted from the operations log); edit (resize one, remove one) with
the exact plan asserted and the resize seen inside the guest; a domain deleted behind
nbcloud's back (drift reports it, apply recreates it); destroy leaves nothing.

The tests of this module run in order and share one stack (TCG boots are dear)."""
from __future__ import annotations

import re

import pytest
from tests.waiting import wait_for

STACK = "sk-it"
NET, CIDR = "sk-net", "10.79.0.0/24"
V1 = f"""
network:
  {NET}: {{cidr: {CIDR}, mode: isolated}}
volume:
  sk-d1: {{size: 1G, tier: ssd}}
  sk-d2: {{size: 1G, tier: hdd}}
instance:
  sk-web: {{image: tiny, flavor: t.nano, network: [{NET}], count: 2}}
  sk-db: {{image: tiny, flavor: {{db_flavor}}, network: [{NET}], volume: [sk-d1, sk-d2]}}
"""
V2 = V1.replace("count: 2", "count: 1")


def _mine(cloud) -> dict[str, list[str]]:
    """What of this module's is left in libvirt and the inventory."""
    backend = cloud.provider
    domains = [d.name() for d in backend.conn.listAllDomains(0) if d.name().startswith("sk-")]
    volumes = [v.name for v in cloud.volumes.list(kind=None) if v.name.startswith("sk-")]
    networks = [n for n in backend.network_names() if n.startswith("sk-")]
    rows = [r.name for r in cloud.inventory.resources(cloud.uri) if r.stack == STACK]
    return {"domains": domains, "volumes": volumes, "networks": networks, "rows": rows}


def _last_op(cloud) -> int:
    ops = cloud.inventory.operations(1)
    return ops[0]["id"] if ops else 0


def _mem_total_kib(inst) -> int:
    out = inst.ssh("grep MemTotal /proc/meminfo")
    return int(re.search(r"(\d+)", out).group(1))


@pytest.fixture(scope="module")
def stacks(cloud):
    """`cloud.stacks`, with this module's stack destroyed before and after."""
    cloud.stacks.destroy(STACK)
    assert not any(_mine(cloud).values()), f"leftovers of an earlier run: {_mine(cloud)}"
    yield cloud.stacks
    cloud.stacks.destroy(STACK)


def test_apply_creates_the_stack(cloud, stacks):
    plan = stacks.plan(STACK, V1, {"db_flavor": "t.nano"})
    assert [(a.op, a.kind, a.name) for a in plan.actions] == [
        ("create", "network", NET), ("create", "volume", "sk-d1"),
        ("create", "volume", "sk-d2"), ("create", "instance", "sk-db"),
        ("create", "instance", "sk-web-1"), ("create", "instance", "sk-web-2")]
    shown = []
    applied = stacks.apply(STACK, V1, {"db_flavor": "t.nano"}, show=shown.append)
    assert shown and applied.applied
    mine = _mine(cloud)
    assert sorted(mine["domains"]) == ["sk-db", "sk-web-1", "sk-web-2"]
    assert mine["networks"] == [NET] and sorted(mine["volumes"]) == ["sk-d1", "sk-d2"]
    for name in mine["domains"]:
        assert cloud.provider.state(name) == "running"
        assert cloud.provider.metadata(name)["stack"] == STACK
    db = cloud.instances.get("sk-db")
    assert sorted(cloud.volumes.get(v).attached_to for v in ("sk-d1", "sk-d2")) == \
        ["sk-db", "sk-db"]
    wait_for(lambda: {"sk-d1", "sk-d2"} <= set(db.ssh(
        "for f in /sys/block/vd*/serial; do cat $f; echo; done").split()), 30,
        "the guest to see both volumes")
    # the web instances reach each other on the stack's network
    assert cloud.instances.get("sk-web-1").ip.startswith("10.79.0.")
    assert {r.stack for r in cloud.inventory.resources(cloud.uri)
            if r.name in ("sk-d1", "sk-d2", NET)} == {STACK}


def test_reapply_unchanged_is_a_no_op(cloud, stacks):
    before = _last_op(cloud)
    plan = stacks.apply(STACK, V1, {"db_flavor": "t.nano"})
    assert plan.actions == [] and "no changes" in str(plan)
    assert _last_op(cloud) == before  # not one operation, so not one libvirt write


def test_edit_resizes_one_and_removes_one(cloud, stacks):
    db = cloud.instances.get("sk-db")
    mem_before = _mem_total_kib(db)
    plan = stacks.plan(STACK, V2, {"db_flavor": "m.nano"})
    assert [(a.op, a.kind, a.name, a.changes) for a in plan.actions] == [
        ("delete", "instance", "sk-web-2", ()),
        ("update", "instance", "sk-db", ("flavor t.nano -> m.nano",))]
    assert "~ update   instance sk-db" in str(plan) and "- delete   instance sk-web-2" in str(plan)
    before = _last_op(cloud)
    stacks.apply(STACK, V2, {"db_flavor": "m.nano"})
    verbs = [(o["verb"], o["name"], o["result"]) for o in cloud.inventory.operations(50)
             if o["id"] > before]
    assert ("delete", "sk-web-2", "ok") in verbs and ("resize", "sk-db", "ok") in verbs
    assert not any(v == "create" for v, _, _ in verbs)
    assert not cloud.provider.exists("sk-web-2")
    dom = cloud.provider.conn.lookupByName("sk-db")
    assert dom.maxMemory() == 256 * 1024
    db.wait_ready()
    assert _mem_total_kib(db) > mem_before + 64 * 1024
    assert sorted(cloud.volumes.get(v).attached_to for v in ("sk-d1", "sk-d2")) == \
        ["sk-db", "sk-db"]
    assert stacks.plan(STACK, V2, {"db_flavor": "m.nano"}).actions == []


def test_deleted_behind_our_back_is_drift_and_recreated(cloud, stacks):
    dom = cloud.provider.conn.lookupByName("sk-web-1")
    dom.destroy()
    dom.undefine()
    rows = [r for r in stacks.drift() if r["name"] == "sk-web-1"]
    assert rows == [{"kind": "instance", "name": "sk-web-1", "stack": STACK,
                     "drift": "deleted behind nbcloud's back"}]
    plan = stacks.plan(STACK, V2, {"db_flavor": "m.nano"})
    assert [(a.op, a.name) for a in plan.actions] == [("create", "sk-web-1")]
    assert plan.drift == ["instance sk-web-1 was deleted behind nbcloud's back"]
    stacks.apply(STACK, V2, {"db_flavor": "m.nano"})
    web = cloud.instances.get("sk-web-1")
    assert web.ssh("hostname").strip() == "sk-web-1"
    assert not [r for r in stacks.drift() if r["name"].startswith("sk-")]
    assert stacks.plan(STACK, V2, {"db_flavor": "m.nano"}).actions == []


def test_destroy_leaves_nothing(cloud, stacks):
    plan = stacks.destroy(STACK)
    assert [(a.op, a.kind) for a in plan.actions] == [
        ("delete", "instance"), ("delete", "instance"), ("delete", "volume"),
        ("delete", "volume"), ("delete", "network")]
    assert _mine(cloud) == {"domains": [], "volumes": [], "networks": [], "rows": []}
    assert STACK not in [s["name"] for s in cloud.inventory.stacks()]
