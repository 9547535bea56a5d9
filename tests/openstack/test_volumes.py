"""Volumes on a real OpenStack (Cinder on Ceph RBD in the all-in-one): created in their
tier's volume type, attached (the guest sees a disk whose serial is the volume's), grown
while attached (the guest sees the new size), detached and deleted; what Cinder and the
compute host show is the witness. The tier's QoS specs reach the guest's disk as
libvirt's <iotune> on the compute host."""
from __future__ import annotations

import subprocess

import pytest

from nbcloud.core.errors import CloudError
from tests.waiting import wait_for
from tests.openstack.conftest import fresh_instance, servers

NAME, VOL = "ok-volhost", "ok-vol"
GIB_SECTORS = (1 << 30) // 512


@pytest.fixture(scope="module")
def server(os_cloud):
    for vol in os_cloud.volumes.list():
        if vol.name == VOL:
            if vol.attachments:
                os_cloud.volumes.detach(VOL)
            os_cloud.volumes.delete(VOL)
    with fresh_instance(os_cloud, NAME, image="tiny", flavor="m.nano") as inst:
        yield inst


def disks(inst) -> dict[str, tuple[str, int]]:
    """serial -> (device, size in sectors), as the guest sees its virtio disks."""
    out = inst.ssh("for d in /sys/block/vd*; do echo ${d##*/} $(cat $d/size) "
                   "$(cat $d/serial 2>/dev/null); done")
    rows = (line.split() for line in out.splitlines())
    return {r[2]: (r[0], int(r[1])) for r in rows if len(r) == 3}


def cinder(admin_conn, name: str):
    found = [v for v in admin_conn.block_storage.volumes(all_projects=True, name=name)
             if v.name == name]
    return found[0] if found else None


def test_a_volume_from_create_to_delete(os_cloud, server, admin_conn):
    vol = os_cloud.volumes.create(VOL, "1G", tier="hdd")
    witness = cinder(admin_conn, VOL)
    assert (witness.status, witness.size, witness.volume_type) == ("available", 1, "hdd")
    assert witness.metadata["nbcloud:kind"] == "volume"
    assert vol.serial == witness.id[:20]

    vol.attach(NAME)
    assert cinder(admin_conn, VOL).status == "in-use"
    assert cinder(admin_conn, VOL).attachments[0]["server_id"] == server.uuid
    seen = wait_for(lambda: disks(server).get(vol.serial), 90, "the guest to see the disk")
    assert seen[1] == GIB_SECTORS
    # the guest writes and reads its volume
    server.ssh(f"printf on-cinder | dd of=/dev/{seen[0]} oflag=direct bs=512 conv=sync "
               "2>/dev/null")
    assert server.ssh(f"dd if=/dev/{seen[0]} bs=9 count=1 2>/dev/null") == "on-cinder"

    vol.resize("2G")
    assert cinder(admin_conn, VOL).size == 2
    wait_for(lambda: disks(server)[vol.serial][1] == 2 * GIB_SECTORS, 120,
             "the guest to see the volume grow")

    with pytest.raises(CloudError, match="attached to 'ok-volhost'"):
        os_cloud.volumes.delete(VOL)
    vol.detach()
    assert cinder(admin_conn, VOL).status == "available"
    wait_for(lambda: vol.serial not in disks(server), 90, "the disk to leave the guest")
    os_cloud.volumes.delete(VOL)
    assert cinder(admin_conn, VOL) is None
    assert not [r for r in os_cloud.ctx.inventory.all("volume") if r.name == VOL]


def test_the_tier_caps_the_guests_disk(os_cloud, server, admin_conn):
    """Cinder's front-end QoS specs of type hdd become <iotune> on the compute host (its
    libvirt, in the all-in-one's mount namespace, where this tier runs)."""
    os_cloud.volumes.create(VOL, "1G", tier="hdd").attach(NAME)
    try:
        domain = getattr(servers(admin_conn, NAME)[0], "instance_name", None)
        assert domain, "an admin sees the server's libvirt domain name"
        xml = subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml", domain],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        assert "<total_bytes_sec>10000000</total_bytes_sec>" in xml
        assert "<total_iops_sec>100</total_iops_sec>" in xml
    finally:
        os_cloud.volumes.detach(VOL)
        os_cloud.volumes.delete(VOL)
