"""Two processes, each attaching 50 instances from 4 threads at once to one security group
and one load balancer, on the real daemon: no member is lost, in the inventory or in what
the engine enforces (the group's nwfilter, each instance's filter, the balancer's running
HAProxy), and no HAProxy is left running an old configuration."""
from __future__ import annotations

import pytest

from tests.concurrent_members import (
    define_members,
    haproxies,
    join_from_processes,
    lost_members,
)
from tests.waiting import wait_for

NET, CIDR = "sec-ccnet", "10.151.11.0/24"
GROUP, LB = "sec-cc", "sec-cclb"
PER_PROCESS = 50
NAMES = [f"sec-cc-{i:03d}" for i in range(2 * PER_PROCESS)]


def _cleanup(cloud) -> None:
    if LB in {b.name for b in cloud.lbs.list()}:
        cloud.lbs.delete(LB)
    if GROUP in {g.name for g in cloud.secgroups.list()}:
        for inst in cloud.secgroups.get(GROUP).instances:
            cloud.secgroups.instance_deleted(inst)
        cloud.secgroups.delete(GROUP)
    for name in NAMES:
        if cloud.provider.exists(name):
            cloud.provider.delete(name)
        cloud.provider.forget_instance_filter(name, cloud.secgroups.owner)
        cloud.ctx.inventory.remove("instance", name)


@pytest.fixture(scope="module")
def members(cloud):
    _cleanup(cloud)
    if NET not in cloud.provider.network_names():
        cloud.networks.create(NET, CIDR)
    addresses = define_members(cloud, NAMES, NET)
    cloud.secgroups.create(GROUP)
    cloud.secgroups.add_rule(GROUP, proto="tcp", port="22", source_group=GROUP)
    cloud.lbs.create(LB, NET, port=8080)
    yield addresses
    _cleanup(cloud)
    cloud.networks.delete(NET)


def test_two_processes_attaching_50_each_lose_no_member(cloud, members):
    errors = join_from_processes(cloud, GROUP, LB, [NAMES[:PER_PROCESS],
                                                    NAMES[PER_PROCESS:]])
    assert errors == []
    assert lost_members(cloud, GROUP, LB, members) == []
    assert sorted(cloud.secgroups.get(GROUP).instances) == NAMES       # each once
    assert sorted(cloud.lbs.get(LB).members) == NAMES
    # the HAProxy processes it replaced finish their soft stop within seconds
    cfg = cloud.provider.balancer_process(LB).cfg
    wait_for(lambda: haproxies(cfg) == [cloud.provider.balancer_process(LB).pid()], 60,
             "the HAProxy processes it replaced to stop")
