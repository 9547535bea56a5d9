"""A stack's `secgroup:` section on the real daemon: applied, changed, unchanged, destroyed.

One guest. libvirt's nwfilter filters what is bridged between guests and what a guest
sends to the host, not what the host sends (no OUTPUT hook), so enforcement is seen through
an egress rule: the guest connects to a port the test listens on at the bridge address."""
from __future__ import annotations

import socket
import threading

import pytest

from nbcloud.providers.libvirt.xml import BASE_FILTER
from tests.guest import group_filter_of, instance_filter_of

STACK = "sgstack"
BODY = """
secgroup:
  sg-st-web: {rules: [%s]}
instance:
  sg-st: {image: tiny, flavor: t.nano, secgroup: [sg-st-web]}
"""


@pytest.fixture(scope="module")
def listener(cloud):
    """A TCP server on the bridge's host address: (address, port, peers it accepted)."""
    gateway = cloud.provider.network("nbcloud").gateway
    srv = socket.create_server((gateway, 0))
    srv.settimeout(0.5)
    peers: list[str] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
            except OSError:
                continue
            peers.append(addr[0])
            conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield gateway, srv.getsockname()[1], peers
    stop.set()
    t.join()
    srv.close()


@pytest.fixture(scope="module")
def stacks(cloud):
    cloud.stacks.destroy(STACK)
    yield cloud.stacks
    cloud.stacks.destroy(STACK)
    assert not {group_filter_of(cloud, "sg-st-web"), instance_filter_of(cloud, "sg-st")} & \
        set(cloud.provider.nwfilter_names())


def reaches(inst, listener) -> bool:
    """Whether the guest's TCP connection to the host's listener gets through."""
    gateway, port, peers = listener
    before = len(peers)
    rc = inst.ssh_result(f"nc -w 2 {gateway} {port} </dev/null", check=False,
                         timeout=30).returncode
    return rc == 0 and len(peers) > before and peers[-1] == inst.ip


def test_stack_secgroup_lifecycle(cloud, stacks, listener):
    gateway, port, _ = listener
    limited = "'tcp 22', 'out udp 53'"   # egress: DNS only
    plan = stacks.apply(STACK, BODY % limited)
    assert [(a.op, a.kind) for a in plan.actions] == [("create", "secgroup"),
                                                      ("create", "instance")]
    inst = cloud.instances.get("sg-st")
    assert cloud.secgroups.get("sg-st-web").instances == ["sg-st"]
    assert set(cloud.provider.interface_filters("sg-st").values()) == \
        {instance_filter_of(cloud, "sg-st")}
    assert not reaches(inst, listener)
    # what an instance needs still works: DNS (the reply is ESTABLISHED). busybox
    # nslookup exits 1 here whatever happens (dnsmasq refuses the AAAA query): read the A
    answer = inst.ssh_result(f"nslookup sg-st {gateway}", check=False, timeout=30).stdout
    assert f"Address: {inst.ip}" in answer

    # a rule more: an update in place, live
    opened = limited + f", 'out tcp {port} to {gateway}'"
    plan = stacks.apply(STACK, BODY % opened)
    assert [(a.op, a.kind) for a in plan.actions] == [("update", "secgroup")]
    rules = cloud.provider.nwfilter(group_filter_of(cloud, "sg-st-web")).rules
    assert any(r.direction == "out" and r.match.get("dstipaddr") == gateway and
               r.match.get("dstportstart") == str(port) for r in rules)
    assert reaches(inst, listener)
    assert not stacks.plan(STACK, BODY % opened).actions  # unchanged: nothing to do

    # back to DNS only, then the instance leaves the group (anti-spoofing only again)
    stacks.apply(STACK, BODY % limited)
    assert not reaches(inst, listener)
    plan = stacks.apply(STACK, BODY.replace(", secgroup: [sg-st-web]", "") % limited)
    assert [(a.op, a.kind) for a in plan.actions] == [("update", "secgroup")]
    assert set(cloud.provider.interface_filters("sg-st").values()) == {BASE_FILTER}
    assert reaches(inst, listener)

    stacks.destroy(STACK)
    assert "sg-st-web" not in {g.name for g in cloud.secgroups.list()}
    assert not cloud.provider.exists("sg-st")
