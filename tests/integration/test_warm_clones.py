"""Warm clones on real TCG guests: two clones of one saved base share nothing of its
identity or random state, each is an ordinary instance afterwards, a stale base gives
way to a cold boot (and is rebuilt), and deleting a clone leaves nothing."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import InvalidSpec
from nbcloud.providers.libvirt import tapguard
from nbcloud.providers.libvirt.volumes import INSTANCE_POOL
from nbcloud.services import ssh

USER_DATA = '#!/bin/sh\necho "user-data ran on $(hostname)" > /root/ud-ran\n'
# The first thing each clone is asked over SSH: 32 bytes of /dev/urandom (the first read
# anyone makes after the restore), the boot id, its name, address, MAC, IPv6 link-local
# address (made from the MAC the NIC came up with) and clock.
PROBE = ("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo;"
         " cat /proc/sys/kernel/random/boot_id; hostname;"
         " ip -4 -o addr show dev eth0 | grep -o 'inet [0-9./]*';"
         " cat /sys/class/net/eth0/address;"
         " ip -6 -o addr show dev eth0 scope link | grep -o 'fe80::[0-9a-f:]*'; date -u +%s")
# 256 reads of 32 bytes: two clones that kept the base's CRNG state would produce the same
# chunks, shifted by however many draws each made before (measured: 251 of 256 shared).
CHUNKS = "dd if=/dev/urandom bs=32 count=256 2>/dev/null | od -An -v -tx1 -w32 | tr -d ' '"


@pytest.fixture(scope="module")
def base(cloud):
    """The warm base of tiny t.nano (built here if no fresh one exists), and its record."""
    cloud.build_tiny()     # the pool's tiny image is this build's (it speaks NBCLONE1)
    cloud.warm("tiny", "t.nano")
    record = Path(cloud.provider.paths["warm"]) / "tiny-1c-128m.json"
    yield json.loads(record.read_text())
    for name in sorted(cloud.provider.managed()):
        if name.startswith("wc-"):
            cloud.instances.delete(name)


@pytest.fixture(scope="module")
def twins(cloud, base):
    made = cloud.instances.create("wc-twin", flavor="t.nano", count=2, user_data=USER_DATA)
    yield made
    for inst in made:
        if cloud.provider.exists(inst.name):
            inst.delete()


def _link_local(mac: str) -> str:
    """The IPv6 link-local address a NIC with `mac` makes itself (EUI-64)."""
    b = bytes.fromhex(mac.replace(":", ""))
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes([b[0] ^ 2]) + b[1:3]
                                     + b"\xff\xfe" + b[3:]))


def _pipes() -> int:
    """Pipes this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except OSError:   # the listing's own descriptor, closed meanwhile
            continue
    return count


def _qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())


def test_two_clones_share_no_identity_or_random_state(cloud, base, twins):
    assert [i.boot for i in twins] == ["cloned", "cloned"]
    seen = {}
    for inst in twins:
        meta = inst.meta
        first, boot_id, host, inet, mac, link, clock = inst.ssh(PROBE).splitlines()[:7]
        assert host == inst.name
        assert inet == f"inet {meta['ip']}/24"
        assert mac == meta["mac"]
        assert link == _link_local(mac)    # made from the clone's MAC, not the base's
        assert abs(int(clock) - time.time()) < 10   # the clock stood still in the base
        chunks = set(inst.ssh(CHUNKS).split())
        assert len(chunks) == 256
        seen[inst.name] = (first, boot_id, meta["hostkey"], chunks)
        ran = wait_for(lambda: inst.ssh("cat /root/ud-ran 2>/dev/null", check=False), 30,
                       "the clone's user-data")
        assert ran.strip() == f"user-data ran on {inst.name}"
        # its DHCP lease, renewed after the restore
        wait_for(lambda: [x for x in cloud.provider.leases("nbcloud")
                          if x["mac"] == meta["mac"] and x["ipaddr"] == meta["ip"]], 30,
                 "the clone's DHCP lease")
    (f1, b1, k1, c1), (f2, b2, k2, c2) = seen.values()
    assert f1 != f2                 # the first read of /dev/urandom after the restore
    assert b1 != b2                 # the boot id is drawn after the reseed
    assert k1 != k2                 # each has the host key nbcloud pinned for it
    assert not c1 & c2              # no CRNG output in common


def test_clones_map_the_bases_memory_and_show_their_seed(cloud, base, twins):
    for inst in twins:
        maps = Path(f"/proc/{_qemu_pid(inst.name)}/maps").read_text()
        assert base["ram"] in maps                      # the base's RAM file, private
        # the seed is plugged in after the restore: vdb, as after a cold boot
        assert inst.ssh("ls /sys/block").split() == ["vda", "vdb"]
        assert inst.ssh("dd if=/dev/vdb bs=8 skip=4101 count=1 2>/dev/null").startswith(
            "cidata")
    shown = repr(twins[0])
    assert "boot=cloned" in shown and "cloned" in twins[0]._repr_html_()


def test_a_clone_runs_filtered_with_its_link_up(cloud, base, twins):
    """The base's NIC has no filter. A clone in no security group runs on a tap nbcloud
    guards itself (tapguard.py: rules with the clone's own MAC and address, made before
    it ran), with no libvirt filter on it; its definition keeps libvirt's filter, for
    its cold starts."""
    import xml.etree.ElementTree as ET
    conn = cloud.provider.conn
    for inst in twins:
        dom = conn.lookupByName(inst.name)
        (nic,) = ET.fromstring(dom.XMLDesc(0)).findall("devices/interface")
        tap = nic.find("target").get("dev")
        assert tap == tapguard.tap_name(dom.UUIDString())
        assert nic.findall("filterref") == []
        assert tapguard.guarded()[tap] == f"c_{tap}"
        rules = tapguard.rules_of(tap)
        assert f"ether saddr != {inst.meta['mac']} drop" in rules
        assert f"ip saddr {inst.ip} accept" in rules and "ether type ip drop" in rules
        assert f"arp saddr ip {inst.ip} accept" in rules and "ether type arp drop" in rules
        with pytest.raises(libvirt.libvirtError):
            conn.nwfilterBindingLookupByPortDev(tap)
        (ref,) = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findall(
            "devices/interface/filterref")
        assert ref.get("filter") == "nbcloud-antispoof"
        assert [(p.get("name"), p.get("value")) for p in ref] == [("IP", inst.ip)]
        link = nic.find("link")
        assert link is None or link.get("state") == "up"
        assert "NO-CARRIER" not in inst.ssh("ip -o link show eth0")   # the guest sees it


def test_a_guarded_clone_sends_from_its_own_address_only(cloud, base, twins):
    """What the rules do: the gateway answers the clone's own address, not another it
    gives itself (neither its IPv4 nor its ARP for it gets past the tap)."""
    inst = twins[1]
    gateway = cloud.provider.network("nbcloud").gateway
    other = str(ipaddress.IPv4Address(gateway) + 200)
    assert other not in {i.ip for i in cloud.instances.list()}
    assert inst.ssh_result(f"ping -c 1 -W 2 {gateway}", check=False).returncode == 0
    inst.ssh(f"ip addr add {other}/32 dev eth0")
    try:
        r = inst.ssh_result(f"ping -c 2 -W 2 -I {other} {gateway}", check=False, timeout=30)
        assert r.returncode != 0, "a packet from an address not its own got through"
        host_arp = subprocess.run(["ip", "neigh", "show", other], capture_output=True,
                                  text=True).stdout
        assert "lladdr" not in host_arp, "the host learnt the other address's MAC"
    finally:
        inst.ssh(f"ip addr del {other}/32 dev eth0; true")


def test_a_clone_is_an_ordinary_instance_afterwards(cloud, base, twins):
    inst = twins[0]
    inst.ssh("echo before > /root/state")
    inst.snapshot("s1")
    inst.ssh("echo after > /root/state")
    inst.revert("s1")
    assert inst.ssh("cat /root/state").strip() == "before"
    assert inst.stop() == "graceful"
    inst.start()
    assert inst.boot == "cold (started again)"
    assert inst.ssh("hostname").strip() == inst.name      # the same pinned host key
    assert "nbwarm" not in inst.ssh("cat /proc/cmdline")


def test_deleting_a_clone_leaves_nothing(cloud, base):
    ram = Path(base["ram"])
    before = hashlib.sha256(ram.read_bytes()).hexdigest()
    pipes = _pipes()
    inst = cloud.instances.create("wc-gone", flavor="t.nano")
    assert inst.boot == "cloned"
    pid, sock = _qemu_pid("wc-gone"), cloud.provider.clone_socket("wc-gone")
    assert not sock.exists()      # gone once the clone had its identity
    tap = tapguard.taps_in(cloud.provider.domain_xml_desc("wc-gone"))
    assert len(tap) == 1 and tap[0] in tapguard.guarded()
    inst.delete()
    assert not cloud.provider.exists("wc-gone")
    assert tap[0] not in tapguard.guarded()      # its rules went with it
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the clone's QEMU to exit")
    assert not sock.exists()
    assert not [v for v in cloud.provider.volumes(INSTANCE_POOL) if v.startswith("wc-gone.")]
    assert _pipes() == pipes         # the stream's pipe closed on our side
    # the base's memory is the same file, unchanged: a clone writes only its own copy
    assert hashlib.sha256(ram.read_bytes()).hexdigest() == before


def test_a_stale_base_gives_way_to_a_cold_boot_and_is_rebuilt(cloud, base):
    tiny, flavor = cloud.images.get("tiny"), cloud.provider.flavor("t.nano")
    record = Path(cloud.provider.paths["warm"]) / "tiny-1c-128m.json"
    kept = record.read_text()
    tampered = json.loads(kept)
    tampered["key"]["qemu"] = "1"           # as if QEMU had been upgraded since
    record.write_text(json.dumps(tampered))
    check = cloud.provider.clone_check(tiny, flavor, ("nbcloud",))
    assert (check.ok, check.base_missing) == (False, True)
    assert "made with another QEMU" in check.why
    record.write_text(kept)
    assert cloud.provider.clone_check(tiny, flavor, ("nbcloud",)).ok
    Path(json.loads(kept)["ram"]).unlink()  # as a host restart empties tmpfs
    cold = cloud.instances.create("wc-stale", flavor="t.nano")
    assert cold.boot.startswith("cold (the memory file of the warm base")
    assert cold.ssh("hostname").strip() == "wc-stale"
    # the create built a new base for the next ones, and logged it
    assert cloud.provider.clone_check(tiny, flavor, ("nbcloud",)).ok
    (op,) = [o for o in cloud.inventory.operations(20) if o["verb"] == "warm"][:1]
    assert op["result"] == "ok" and op["detail"].startswith("built the warm base of tiny")
    warm = cloud.instances.create("wc-fresh", flavor="t.nano")
    assert warm.boot == "cloned"
    assert ssh.fingerprint(warm.meta["hostkey"]) == warm.host_key_fingerprint
    for inst in (cold, warm):
        inst.delete()


def test_boot_clone_is_refused_in_one_line_where_no_clone_can_be(cloud, base):
    for kwargs, words in ((dict(screen=True), "a screen is a device"),
                          (dict(boot="sideways"), "boot 'sideways' is not allowed")):
        with pytest.raises(InvalidSpec, match=words):
            cloud.instances.create("wc-never", flavor="t.nano",
                                   **{"boot": "clone", **kwargs})
        assert not cloud.provider.exists("wc-never")
    cold = cloud.instances.create("wc-cold", flavor="t.nano", boot="cold")
    assert cold.boot == "cold (asked)"
    cold.delete()
