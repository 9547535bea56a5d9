"""`%cloud adopt NAME --kind network|volume` on the real daemon: a network and a volume made
with virsh come into a stack, are shown by `stack show` and no longer as unmanaged drift, are
left as libvirt had them, and serve an instance (the guest sees the adopted volume on a NIC
of the adopted network)."""
from __future__ import annotations

import subprocess

import pytest

from nbcloud.ui import commands
from tests.waiting import wait_for

NET, BRIDGE, CIDR = "nc-ad-net", "nc-ad-br0", "10.155.0.0/24"
VOL, STACK, VM = "nc-ad-vol", "nc-ad", "nc-ad-vm"
NET_XML = (f"<network><name>{NET}</name><bridge name='{BRIDGE}'/>"
           "<ip address='10.155.0.1' netmask='255.255.255.0'><dhcp>"
           "<range start='10.155.0.128' end='10.155.0.250'/></dhcp></ip></network>")


def virsh(cloud, *args, check=True) -> str:
    return subprocess.run(["virsh", "-c", cloud.uri, *args], capture_output=True, text=True,
                          check=check).stdout


def cmd(cloud, *words):
    return commands.run(cloud, commands.parse(list(words)))


def _cleanup(cloud):
    if cloud.provider.exists(VM):
        cloud.instances.delete(VM)
    for kind, name in (("volume", VOL), ("network", NET)):
        cloud.inventory.remove(cloud.uri, kind, name)
    virsh(cloud, "vol-delete", f"{VOL}.ssd.qcow2", "--pool", "nbcloud-ssd", check=False)
    virsh(cloud, "net-destroy", NET, check=False)
    virsh(cloud, "net-undefine", NET, check=False)


@pytest.fixture
def foreign(cloud, tmp_path):
    """An isolated network and a 64 MiB ssd volume, both made with virsh."""
    _cleanup(cloud)
    (tmp_path / "net.xml").write_text(NET_XML)
    virsh(cloud, "net-define", str(tmp_path / "net.xml"))
    virsh(cloud, "net-start", NET)
    virsh(cloud, "vol-create-as", "nbcloud-ssd", f"{VOL}.ssd.qcow2", "64M", "--format",
          "qcow2")
    yield
    _cleanup(cloud)


def test_adopted_network_and_volume_join_a_stack_and_serve_an_instance(cloud, foreign):
    unmanaged = {(r[0], r[1]) for r in cloud.stacks.drift().rows}
    assert ("network", NET) in unmanaged
    net_xml = virsh(cloud, "net-dumpxml", NET)

    said = cmd(cloud, "adopt", NET, "--kind", "network", "--stack", STACK)
    assert f"adopted network {NET} ({CIDR} isolated)" in str(said)
    said = cmd(cloud, "adopt", VOL, "--kind", "volume", "--stack", STACK)
    assert f"adopted volume {VOL} ({VOL}.ssd.qcow2 in nbcloud-ssd)" in str(said)

    shown = {row["name"]: row for row in cmd(cloud, "stack", "show", STACK)}
    assert set(shown) == {NET, VOL}
    assert "size=64M" in shown[VOL]["spec"] and "tier=ssd" in shown[VOL]["spec"]
    assert not {(r[0], r[1]) for r in cloud.stacks.drift().rows} & {("network", NET),
                                                                    ("volume", VOL)}
    assert virsh(cloud, "net-dumpxml", NET) == net_xml       # libvirt's object untouched

    # they serve an instance: a NIC on the adopted network, the adopted volume attached
    inst = cloud.instances.create(VM, flavor="t.nano", network=NET)
    assert inst.ip.startswith("10.155.0.")
    cmd(cloud, "volume", "attach", VOL, VM)
    wait_for(lambda: VOL in inst.ssh("cat /sys/block/vd*/serial 2>/dev/null").split(), 60,
             f"the guest to see {VOL} as a disk's serial")
    cmd(cloud, "volume", "detach", VOL)
    cloud.instances.delete(VM)
    cmd(cloud, "volume", "delete", VOL)                       # now nbcloud's to delete
    assert f"{VOL}.ssd.qcow2" not in virsh(cloud, "vol-list", "nbcloud-ssd")
