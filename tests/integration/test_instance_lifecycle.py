"""A real guest: boot, DHCP lease, SSH with a pinned host key, user-data, stop/start,
delete — asserted on what the guest and libvirt show."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import AlreadyExists, SSHError
from nbcloud.providers.libvirt.volumes import INSTANCE_POOL
from nbcloud.services import keys, ssh


def test_guest_answers_ssh_with_its_own_hostname_and_kernel(running_instance):
    out = running_instance.ssh("uname -a")
    assert out.startswith("Linux it-web ")
    assert "cloud-amd64" in out
    assert running_instance.ssh("cat /proc/cmdline").find("console=ttyS0") >= 0


def test_guest_sees_the_cpu_model_and_the_nocloud_smbios_serial(cloud, running_instance):
    """Under TCG the guest gets qemu64 + RDRAND (faster to emulate than 'maximum'), and
    every guest reads "ds=nocloud" as its SMBIOS serial (cloud-init's datasource hint)."""
    assert running_instance.ssh("cat /sys/class/dmi/id/product_serial").strip() == \
        "ds=nocloud"
    cpuinfo = running_instance.ssh("cat /proc/cpuinfo")
    flags = set(next(line for line in cpuinfo.splitlines()
                     if line.startswith("flags")).split(":", 1)[1].split())
    if cloud.accelerator()["accelerator"] == "tcg":
        assert "QEMU Virtual CPU" in cpuinfo
        assert "rdrand" in flags
        assert "avx" not in flags


def test_address_is_reserved_and_leased_by_dhcp(cloud, running_instance):
    meta = running_instance.meta
    net = cloud.provider.network("nbcloud")
    assert (meta["mac"], meta["ip"], "it-web") in net.hosts
    guest_addr = running_instance.ssh("ip -4 -o addr show dev eth0")
    assert f"inet {meta['ip']}/24" in guest_addr
    lease = wait_for(lambda: [lease for lease in cloud.provider.leases("nbcloud")
                              if lease["mac"] == meta["mac"]], 20, "a DHCP lease")
    assert lease[0]["ipaddr"] == meta["ip"]
    # a reserved address is leased for 10 minutes, not dnsmasq's hour, so a deleted
    # instance's lease soon stops keeping its address from the next MAC
    assert 0 < lease[0]["expirytime"] - time.time() <= 10 * 60 + 5


def test_user_data_ran_after_boot(running_instance):
    text = wait_for(lambda: running_instance.ssh("cat /root/user-data-ran 2>/dev/null",
                                                 check=False), 15, "user-data")
    assert text.strip() == "made by user-data on it-web"


def test_host_key_is_pinned_and_a_different_key_is_refused(running_instance):
    assert running_instance.host_key_fingerprint.startswith("SHA256:")
    # the guest printed the pinned key's fingerprint on its console, as cloud-init does
    assert running_instance.host_key_fingerprint in running_instance.console()
    _, impostor = keys.generate("impostor")
    with pytest.raises(SSHError, match="not the one nbcloud pinned"):
        ssh.connect(running_instance.ip, host_key=impostor,
                    key_path=keys.user_key().private_path)


def test_domain_carries_metadata_and_inventory_records_it(cloud, running_instance):
    root = ET.fromstring(cloud.provider.domain_xml_desc("it-web"))
    assert root.get("type") == ("kvm" if cloud.accelerator()["accelerator"] == "kvm"
                                else "qemu")
    assert root.find("metadata") is not None
    meta = running_instance.meta
    assert meta["kind"] == "instance" and meta["stack"] == "adhoc"
    assert meta["hostkey"].startswith("ssh-ed25519 ")
    (res,) = [r for r in cloud.inventory.resources(cloud.uri, "instance")
              if r.name == "it-web"]
    assert res.state == "running" and res.uuid == running_instance.uuid
    ops = [o for o in cloud.inventory.operations(100) if o["name"] == "it-web"]
    assert ops[-1]["verb"] == "create" and ops[-1]["result"] == "ok"
    console = running_instance.console()
    assert f"nbcloud-ready ip={meta['ip']}" in console


def test_shared_cpu_flavor_is_capped_after_boot(cloud, running_instance):
    dom = cloud.provider.conn.lookupByName("it-web")
    params = dom.schedulerParameters()
    assert params["vcpu_quota"] == params["vcpu_period"] // 4   # t.nano: 25 % of a core


def test_same_name_is_refused(cloud, running_instance):
    with pytest.raises(AlreadyExists):
        cloud.instances.create("it-web")


def test_stop_is_graceful_and_start_comes_back(cloud, running_instance):
    before = running_instance.ssh("cat /proc/sys/kernel/random/boot_id").strip()
    assert running_instance.stop(timeout=30) == "graceful"
    assert running_instance.state == "stopped"
    running_instance.start()
    assert running_instance.state == "running"
    after = running_instance.ssh("cat /proc/sys/kernel/random/boot_id").strip()
    assert after and after != before          # a new boot, same pinned host key


def test_delete_leaves_nothing_behind(cloud, running_instance):
    meta = running_instance.meta
    running_instance.delete()
    assert not cloud.provider.exists("it-web")
    assert "it-web.seed.iso" not in cloud.provider.volumes(INSTANCE_POOL)
    assert all(h[0] != meta["mac"] for h in cloud.provider.network("nbcloud").hosts)
    assert all(r.name != "it-web" for r in cloud.inventory.resources(cloud.uri))
