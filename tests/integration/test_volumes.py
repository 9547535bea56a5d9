"""Volumes and cdroms on the real daemon, asserted on what the guest itself sees:
the block device, its serial and size, data that survives detach/attach, live growth,
the tiers' speeds, and the files of an ISO."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotFound

VM = "st-vm"
MiB = 1 << 20




def _remove_mine(cloud) -> None:
    """Detach and delete this module's volumes (prefix st-v, st-iso); nobody else's."""
    for vol in cloud.volumes.list(kind=None):
        if vol.name.startswith(("st-v", "st-iso")):
            if vol.attachments:
                cloud.volumes.detach(vol.name)
            cloud.volumes.delete(vol.name)


@pytest.fixture(scope="module")
def vm(cloud):
    """One tiny instance for the whole module (TCG boots are dear)."""
    if cloud.provider.exists(VM):
        cloud.instances.delete(VM)
    _remove_mine(cloud)
    inst = cloud.instances.create(VM, image="tiny", flavor="t.nano", network="nbcloud")
    yield inst
    if cloud.provider.exists(VM):
        cloud.instances.delete(VM)
    _remove_mine(cloud)


def guest_disks(vm) -> dict[str, tuple[str, int]]:
    """serial -> (device, size in bytes), as the guest's /sys/block says."""
    out = vm.ssh("for d in /sys/block/vd*; do echo \"${d##*/} $(cat $d/serial 2>/dev/null)"
                 " $(cat $d/size)\"; done")
    disks = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            disks[parts[1]] = (parts[0], int(parts[2]) * 512)
    return disks


def guest_device(vm, serial: str, present: bool = True) -> str:
    if present:
        return wait_for(lambda: guest_disks(vm).get(serial, ("", 0))[0], 30,
                        f"{serial} to appear in the guest")
    wait_for(lambda: serial not in guest_disks(vm), 30, f"{serial} to leave the guest")
    return ""


def state(cloud) -> tuple:
    """What a refused operation must leave as it was: volumes, disks, inventory."""
    vols = sorted((v.pool, v.name, v.capacity) for v in cloud.provider.all_volumes()
                  if v.name.startswith("st-"))  # others' tests run meanwhile
    disks = ET.tostring(ET.fromstring(cloud.provider.domain_xml_desc(VM)).find("devices"))
    inv = sorted((r.kind, r.name, r.state, str(r.spec))
                 for r in cloud.inventory.resources(cloud.uri))
    return vols, disks, inv, cloud.provider.metadata(VM).get("volumes", "")


def test_attached_volume_is_a_block_device_with_its_size_and_serial(cloud, vm):
    vol = cloud.volumes.create("st-vdata", size="64M", tier="ssd")
    assert (vol.tier, vol.size, vol.pool) == ("ssd", 64 * MiB, "nbcloud-ssd")
    assert vol.path.endswith("/ssd/st-vdata.ssd.qcow2")
    vol.attach(VM)
    dev = guest_device(vm, "st-vdata")
    assert dev == "vdc"  # vda is the scratch disk, vdb the seed: the next is vdc
    assert guest_disks(vm)["st-vdata"][1] == 64 * MiB
    assert vol.attached_to == VM
    assert cloud.provider.metadata(VM)["volumes"] == "st-vdata"
    (res,) = [r for r in cloud.inventory.resources(cloud.uri, "volume")
              if r.name == "st-vdata"]
    assert res.state == "attached" and res.spec["attached_to"] == VM
    # persistent too: the definition has it, with the tier's caps
    (disk,) = [d for d in cloud.provider.domain_disks(VM, inactive=True)
               if d.serial == "st-vdata"]
    assert disk.iotune.total_bytes_sec == 200_000_000


def test_writes_survive_detach_and_attach(cloud, vm):
    dev = guest_device(vm, "st-vdata")
    vm.ssh(f"printf st-written-before-detach | dd of=/dev/{dev} conv=fsync 2>/dev/null")
    cloud.volumes.detach("st-vdata", VM)
    guest_device(vm, "st-vdata", present=False)
    assert cloud.volumes.get("st-vdata").attached_to == ""
    assert cloud.provider.metadata(VM)["volumes"] == ""
    assert all(d.serial != "st-vdata" for d in cloud.provider.domain_disks(VM, inactive=True))
    cloud.volumes.attach("st-vdata", VM)
    dev = guest_device(vm, "st-vdata")
    assert vm.ssh(f"dd if=/dev/{dev} bs=24 count=1 2>/dev/null") == "st-written-before-detach"


def test_resize_grows_the_disk_the_guest_sees(cloud, vm):
    cloud.volumes.resize("st-vdata", "128M")
    wait_for(lambda: guest_disks(vm)["st-vdata"][1] == 128 * MiB, 20,
             "the guest to see 128 MiB")
    assert cloud.volumes.get("st-vdata").size == 128 * MiB
    before = state(cloud)
    with pytest.raises(CloudError, match="resize only grows"):
        cloud.volumes.resize("st-vdata", "64M")
    assert state(cloud) == before


def _write_speed(vm, dev: str) -> float:
    """MB/s of 32 MiB of direct writes inside the guest, timed by the guest's clock
    (this busybox dd does not print a rate)."""
    out = vm.ssh("cut -d' ' -f1 /proc/uptime; "
                 f"dd if=/dev/zero of=/dev/{dev} bs=1M count=32 oflag=direct 2>/dev/null; "
                 "cut -d' ' -f1 /proc/uptime")
    start, end = (float(x) for x in out.split())
    return 32 * MiB / max(end - start, 0.01) / 1e6


def test_hdd_tier_is_slower_than_ssd_inside_the_guest(cloud, vm):
    cloud.volumes.create("st-vfast", size="64M", tier="ssd").attach(VM)
    cloud.volumes.create("st-vslow", size="64M", tier="hdd").attach(VM)
    # what QEMU enforces, from the live domain: the tiers' <iotune> caps
    caps = {d.findtext("serial"): int(d.findtext("iotune/total_bytes_sec") or 0)
            for d in ET.fromstring(cloud.provider.conn.lookupByName(VM).XMLDesc())
            .findall("devices/disk")}
    assert (caps["st-vfast"], caps["st-vslow"]) == (200_000_000, 10_000_000)
    fast = _write_speed(vm, guest_device(vm, "st-vfast"))
    slow = _write_speed(vm, guest_device(vm, "st-vslow"))
    print(f"inside the guest: ssd {fast:.1f} MB/s, hdd {slow:.1f} MB/s")
    # relative, not absolute: a loaded host slows both, and only the ssd has room to
    # be slowed (the hdd is held at its cap however idle the host is)
    assert fast > slow
    for name in ("st-vfast", "st-vslow"):
        cloud.volumes.detach(name)
        cloud.volumes.delete(name)


def test_every_refusal_is_one_line_and_changes_nothing(cloud, vm, tmp_path):
    cloud.volumes.create("st-vfree", size="16M", tier="hdd")
    before = state(cloud)
    cases = [
        (lambda: cloud.volumes.create("st-vbad", size="12Q"), InvalidSpec),
        (lambda: cloud.volumes.create("st-vbad", size="0"), InvalidSpec),
        (lambda: cloud.volumes.create("st-vbad", size="1G", tier="nvme"), InvalidSpec),
        (lambda: cloud.volumes.create("St_bad", size="1G"), InvalidSpec),
        (lambda: cloud.volumes.create("st-vdata", size="1G"), AlreadyExists),
        (lambda: cloud.volumes.create("st-vbad", size="1G", pool="nbcloud"), CloudError),
        (lambda: cloud.volumes.create("st-vbad", size="1G", pool="st-nopool"), NotFound),
        (lambda: cloud.volumes.resize("st-vdata", "1M"), CloudError),
        (lambda: cloud.volumes.delete("st-vdata"), CloudError),         # attached
        (lambda: cloud.volumes.attach("st-vfree", "st-novm"), NotFound),
        (lambda: cloud.volumes.attach("st-vdata", VM), CloudError),     # attached already
        (lambda: cloud.volumes.attach("st-vnone", VM), NotFound),
        (lambda: cloud.volumes.detach("st-vfree"), CloudError),         # not attached
        (lambda: cloud.volumes.detach("st-vdata", "st-novm"), CloudError),
        (lambda: cloud.volumes.delete("st-vnone"), NotFound),
        (lambda: cloud.cdroms.create("st-isobad", tmp_path / "missing"), CloudError),
    ]
    for call, error in cases:
        with pytest.raises(error) as exc:
            call()
        assert "\n" not in str(exc.value)
        assert state(cloud) == before, str(exc.value)
    cloud.volumes.delete("st-vfree")


def test_refusals_through_the_magic_are_usage_errors(cloud, vm):
    from IPython.core.error import UsageError

    from nbcloud.ui.magics import CloudMagics
    magic = CloudMagics(shell=None)
    magic._cloud = cloud
    for line in ("volume create st-vbad --size 1X", "volume create st-vbad --size 1G "
                 "--tier tape", "volume delete st-vdata", "volume resize st-vdata --size 1M"):
        with pytest.raises(UsageError) as exc:
            magic.cloud(line)
        assert "\n" not in str(exc.value)
    assert "st-vdata" in str(magic.cloud("volume list"))


def test_iso_files_are_readable_in_the_guest(cloud, vm, tmp_path):
    (tmp_path / "hello.txt").write_text("hello from the host\n")
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "A longer Name.conf").write_text("nested\n")
    cd = cloud.cdroms.create("st-iso", tmp_path)
    assert cd.kind == "cdrom" and "st-iso" in [v.name for v in cloud.cdroms.list()]
    cloud.cdroms.attach("st-iso", VM)
    dev = guest_device(vm, "st-iso")
    (disk,) = [d for d in cloud.provider.domain_disks(VM) if d.serial == "st-iso"]
    assert disk.readonly and disk.device == "disk" and disk.bus == "virtio"
    out = vm.ssh(f"mkdir -p /mnt/st && mount -t iso9660 -o ro /dev/{dev} /mnt/st && "
                 "cat /mnt/st/hello.txt '/mnt/st/sub dir/A longer Name.conf'; umount /mnt/st")
    assert out == "hello from the host\nnested\n"
    # read-only: the guest cannot write to it
    r = vm.ssh_result(f"printf x | dd of=/dev/{dev} conv=fsync", check=False)
    assert r.returncode != 0
    cloud.cdroms.detach("st-iso")
    guest_device(vm, "st-iso", present=False)
    cloud.cdroms.delete("st-iso")
    assert "st-iso" not in [v.name for v in cloud.volumes.list(kind=None)]


def test_deleting_the_instance_keeps_its_volume(cloud, vm):
    assert cloud.volumes.get("st-vdata").attached_to == VM
    vm.delete()
    vol = cloud.volumes.get("st-vdata")
    assert vol.attached_to == "" and vol.size == 128 * MiB
    (res,) = [r for r in cloud.inventory.resources(cloud.uri, "volume")
              if r.name == "st-vdata"]
    assert res.state == "available"
    vol.delete()
    assert all(v.name != "st-vdata" for v in cloud.volumes.list())
