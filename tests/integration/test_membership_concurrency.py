"""Two processes, each attaching 50 instances from 4 threads at once to one security group
and one load balancer, on the real daemon: no member is lost, in the inventory or in what
the engine enforces (the group's nwfilter, the balancer's running HAProxy).

The 100 instances are defined, not started (no guest needs to boot for membership): each
is a domain with nbcloud's metadata and a NIC on the test's network, and has its row in
the shared inventory, as `instances.create` would leave it.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nbcloud.providers.libvirt import xml as lx
from tests.integration.guests import group_filter_of, instance_filter_of
from tests.integration.waiting import wait_for

NET, CIDR = "sec-ccnet", "10.151.11.0/24"
GROUP, LB = "sec-cc", "sec-cclb"
PER_PROCESS, THREADS = 50, 4
NAMES = [f"sec-cc-{i:03d}" for i in range(2 * PER_PROCESS)]


def _address(i: int) -> str:
    return f"10.151.11.{10 + i}"


def _define(cloud, i: int) -> None:
    name, mac = NAMES[i], f"52:54:00:5e:{i // 256:02x}:{i % 256:02x}"
    meta = {"kind": "instance", "stack": "adhoc", "image": "tiny", "flavor": "t.nano",
            "networks": NET, "ip": _address(i), "ips": f"{NET}={_address(i)}", "mac": mac,
            "created": "0"}
    d = lx.DomainDef(name=name, vcpus=1, memory=64 << 20,
                     nics=(lx.Nic(NET, mac, ip=_address(i)),), metadata=meta)
    cloud.provider.conn.defineXML(lx.domain_xml(d))
    cloud.ctx.inventory.put("instance", name, state="stopped",
                            spec={"networks": [NET], "image": "tiny", "flavor": "t.nano"})


def _joiner(inventory_path: str, names: list[str], start, errors) -> None:
    """One process: attach `names` to the group and the balancer, THREADS at a time."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    from tests.real_daemon import URI
    start.wait()
    try:
        cloud = Cloud(URI, inventory=Inventory(inventory_path))

        def join(name: str) -> None:
            cloud.secgroups.attach(GROUP, name)
            cloud.lbs.add_members(LB, [name])
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(join, names))
        cloud.close()
    except Exception as exc:  # reported to the parent, which fails the test with it
        errors.put(f"{type(exc).__name__}: {exc}")


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
        cloud.provider.forget_instance_filter(name, cloud.ctx.inventory.owner)
        cloud.ctx.inventory.remove("instance", name)


@pytest.fixture(scope="module")
def membership(cloud):
    _cleanup(cloud)
    if NET not in cloud.provider.network_names():
        cloud.networks.create(NET, CIDR)
    for i in range(len(NAMES)):
        _define(cloud, i)
    cloud.secgroups.create(GROUP)
    cloud.secgroups.add_rule(GROUP, proto="tcp", port="22", source_group=GROUP)
    cloud.lbs.create(LB, NET, port=8080)
    yield cloud
    _cleanup(cloud)
    cloud.networks.delete(NET)


def _haproxies(cfg: Path) -> list[int]:
    """Pids of the HAProxy processes serving config file `cfg`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"haproxy") and str(cfg).encode() in argv:
            out.append(int(pid))
    return out


def test_two_processes_attaching_50_each_lose_no_member(membership):
    cloud = membership
    ctx = mp.get_context("spawn")
    start, errors = ctx.Event(), ctx.Queue()
    halves = [NAMES[:PER_PROCESS], NAMES[PER_PROCESS:]]
    procs = [ctx.Process(target=_joiner, args=(str(cloud.ctx.inventory.path), half, start,
                                               errors)) for half in halves]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(600)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == [] and [p.exitcode for p in procs] == [0, 0]

    # the records: every member, once
    assert sorted(cloud.secgroups.get(GROUP).instances) == NAMES
    assert sorted(cloud.lbs.get(LB).members) == NAMES
    # the group's filter lets every member's address in, each instance carries its filter
    rules = cloud.provider.nwfilter(group_filter_of(cloud, GROUP)).rules
    assert sorted(r.match["srcipaddr"] for r in rules) == \
        sorted(_address(i) for i in range(len(NAMES)))
    for name in NAMES:
        assert set(cloud.provider.interface_filters(name, inactive=True).values()) == \
            {instance_filter_of(cloud, name)}
    # one HAProxy, running the configuration with every member (the ones it took over
    # from finish their soft stop within seconds; none is left running an old one)
    cfg = cloud.provider.balancer_process(LB).cfg
    servers = re.findall(r"^\s*server (\S+) ", cfg.read_text(), re.M)
    assert sorted(servers) == NAMES
    wait_for(lambda: _haproxies(cfg) == [cloud.provider.balancer_process(LB).pid()], 60,
             "the HAProxy processes it replaced to stop")
