"""Snapshots, resize and --count on real guests, asserted inside the guest."""
from __future__ import annotations

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import NotFound, SSHError


def mem_total_kib(inst) -> int:
    line = inst.ssh("grep MemTotal /proc/meminfo")
    return int(line.split()[1])


@pytest.fixture(scope="module")
def ops_instance(cloud):
    name = "it-ops"
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    inst = cloud.instances.create(name, flavor="t.nano")
    yield inst
    if cloud.provider.exists(name):
        cloud.instances.delete(name)


def test_snapshot_and_revert_bring_back_the_guests_files(ops_instance):
    ops_instance.ssh("echo before > /root/state")
    ops_instance.snapshot("s1")
    assert "s1" in ops_instance.snapshots()
    ops_instance.ssh("echo after > /root/state; touch /root/later")
    ops_instance.revert("s1")
    assert ops_instance.state == "running"
    assert ops_instance.ssh("cat /root/state").strip() == "before"
    assert ops_instance.ssh("ls /root/later 2>/dev/null || echo gone").strip() == "gone"
    with pytest.raises(NotFound, match="no snapshot 'nope'"):
        ops_instance.revert("nope")


def test_resize_cpu_share_only_is_live(cloud, ops_instance):
    boot_id = ops_instance.ssh("cat /proc/sys/kernel/random/boot_id")
    assert ops_instance.resize("c.nano") == "live"     # same size, dedicated CPU
    assert ops_instance.flavor == "c.nano"
    quota = cloud.provider.conn.lookupByName("it-ops").schedulerParameters()["vcpu_quota"]
    assert quota < 0 or quota >= 100000               # no cap any more
    assert ops_instance.ssh("cat /proc/sys/kernel/random/boot_id") == boot_id


def test_resize_memory_restarts_and_the_guest_sees_it(ops_instance):
    before = mem_total_kib(ops_instance)
    assert ops_instance.resize("m.micro") == "stopped, redefined and started"
    assert ops_instance.flavor == "m.micro"
    after = mem_total_kib(ops_instance)
    assert after > before + 200 * 1024               # 128 MiB -> 512 MiB


def test_count_creates_overlapping_instances(cloud):
    made = cloud.instances.create("it-cnt", flavor="m.nano", count=2)
    try:
        assert [i.name for i in made] == ["it-cnt-1", "it-cnt-2"]
        ips = {i.ip for i in made}
        assert len(ips) == 2
        for inst in made:
            assert inst.ssh("hostname").strip() == inst.name
    finally:
        for inst in made:
            inst.delete()


def test_reboot_is_a_new_boot_of_the_same_instance(ops_instance):
    before = ops_instance.ssh("cat /proc/sys/kernel/random/boot_id")
    ops_instance.reboot()
    after = wait_for(lambda: _boot_id_if_up(ops_instance), 60, "the rebooted guest")
    assert after != before
    assert ops_instance.ssh("hostname").strip() == "it-ops"


def _boot_id_if_up(inst) -> str:
    try:
        return inst.ssh("cat /proc/sys/kernel/random/boot_id", timeout=5)
    except SSHError:
        return ""


def test_create_with_a_volume_and_delete_with_its_volumes(cloud):
    from nbcloud.core.errors import InvalidSpec
    for leftover in ("it-vol", "it-vol-data"):
        if cloud.provider.exists(leftover):
            cloud.instances.delete(leftover)
    if "it-vol-data" in [v.name for v in cloud.volumes.list()]:
        cloud.volumes.delete("it-vol-data")
    cloud.volumes.create("it-vol-data", size="32M")
    with pytest.raises(InvalidSpec, match="attaches to one instance"):
        cloud.instances.create("it-vol", count=2, volumes=["it-vol-data"])
    inst = cloud.instances.create("it-vol", flavor="m.nano", volumes=["it-vol-data"])
    serials = wait_for(lambda: "it-vol-data" in inst.ssh("cat /sys/block/vd*/serial"), 30,
                       "the volume inside the guest")
    assert serials
    inst.delete(volumes=True)
    assert "it-vol-data" not in [v.name for v in cloud.volumes.list()]
