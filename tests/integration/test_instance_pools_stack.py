"""A stack's `ipool:` section on the real daemon: two tiny members on the nbcloud network,
in a security group of the stack, that answer SSH; re-applied unchanged, scaled to one by
re-applying, destroyed to nothing (no domains, no filters, no inventory rows)."""
from __future__ import annotations

import pytest

from tests.guest import group_filter_of, instance_filter_of

STACK = "ipst"
POOL = "ipweb"
MEMBERS = [f"{POOL}-1", f"{POOL}-2"]
GROUP = "ipst-fw"


def _body(size: int) -> str:
    return (f"secgroup:\n  {GROUP}: {{rules: ['tcp 22']}}\n"
            f"ipool:\n  {POOL}: {{image: tiny, flavor: t.nano, network: nbcloud, "
            f"size: {size}, secgroup: [{GROUP}]}}\n")


def _ours(cloud) -> list[tuple[str, str]]:
    return sorted((r.kind, r.name) for r in cloud.inventory.resources(cloud.uri)
                  if r.stack == STACK)


@pytest.fixture
def clean(cloud):
    """Nothing of an earlier, interrupted run; whatever this one leaves, destroyed."""
    for name in MEMBERS:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
    cloud.stacks.destroy(STACK)
    yield cloud
    cloud.stacks.destroy(STACK)
    for name in MEMBERS:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)


def test_stack_pool_applies_scales_and_destroys(clean):
    cloud = clean
    plan = cloud.stacks.apply(STACK, _body(2))
    assert [(a.op, a.kind, a.name) for a in plan.actions] == [("create", "secgroup", GROUP),
                                                              ("create", "ipool", POOL)]
    assert cloud.ipools.get(POOL).members == MEMBERS
    assert sorted(cloud.secgroups.get(GROUP).instances) == MEMBERS
    for name in MEMBERS:
        assert cloud.provider.state(name) == "running"
        assert cloud.provider.metadata(name)["stack"] == STACK
        # libvirt filters the member's NIC through the group's nwfilter
        mine = instance_filter_of(cloud, name)
        assert set(cloud.provider.interface_filters(name).values()) == {mine}
        assert group_filter_of(cloud, GROUP) in cloud.provider.nwfilter(mine).refs
        assert cloud.instances.get(name).ssh("hostname").strip() == name
    assert _ours(cloud) == [("instance", n) for n in MEMBERS] + [("ipool", POOL),
                                                                 ("secgroup", GROUP)]
    # unchanged on re-apply, and the members are not drift
    assert cloud.stacks.plan(STACK, _body(2)).actions == []
    assert not [r for r in cloud.stacks.drift().rows if r[1] in MEMBERS]

    plan = cloud.stacks.apply(STACK, _body(1))
    assert [a.line() for a in plan.actions] == [f"  ~ update   ipool {POOL}  (size 2 -> 1)"]
    assert cloud.ipools.get(POOL).members == MEMBERS[:1]
    assert cloud.secgroups.get(GROUP).instances == MEMBERS[:1]
    domains, _foreign = cloud.provider.domains_live()
    assert [n for n in domains if n.startswith(f"{POOL}-")] == MEMBERS[:1]

    plan = cloud.stacks.destroy(STACK)
    assert [(a.op, a.kind, a.name) for a in plan.actions] == [("delete", "ipool", POOL),
                                                              ("delete", "secgroup", GROUP)]
    domains, foreign = cloud.provider.domains_live()
    assert not [n for n in list(domains) + foreign if n.startswith(f"{POOL}-")]
    assert _ours(cloud) == []
    assert not any(p.name == POOL for p in cloud.ipools.list())
    assert not {group_filter_of(cloud, GROUP),
                *(instance_filter_of(cloud, m) for m in MEMBERS)} & \
        set(cloud.provider.nwfilter_names())
