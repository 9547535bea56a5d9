"""Warm clones without a guest: the identity message and what the tiny init makes of it,
the base's and the clone's domain XML, a clone's snapshot made revertable, nbreseed, and
the refusals where no clone can be (the test driver)."""
from __future__ import annotations

import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser

import nbcloud.images
from nbcloud.core.cloudinit import StaticNet, new_host_key, seed_files
from nbcloud.core.errors import InvalidSpec
from nbcloud.core.flavors import get_flavor
from nbcloud.core.spec import InstanceSpec
from nbcloud.images.clone_identity import PROTOCOL, dropbear_ed25519, identity_message, nics_lines
from nbcloud.images.cpio import read_newc
from nbcloud.images.reseed import nbreseed
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.clone_domain import (
    base_domain_xml,
    clone_domain_xml,
    snapshot_without_clone_start,
)
from nbcloud.providers.types import Image

pytestmark = pytest.mark.unit

BUSYBOX = shutil.which("busybox")
INIT = Path(nbcloud.images.__file__).parent / "tiny_init.sh"
NETS = [StaticNet("52:54:00:AB:cd:01", "10.80.0.5/24", "10.80.0.1", ("10.80.0.1",)),
        StaticNet("52:54:00:ab:cd:02", "10.81.0.5/24", "10.81.0.1", ())]
TINY = Image("tiny", "kernel", "d" * 64, 1, kernel="/img/tiny.vmlinuz",
             initrd="/img/tiny.initrd", cmdline="console=ttyS0 quiet", warm=PROTOCOL)
USER_CC = "#cloud-config\nhostname: other\nruncmd:\n  - echo one > out\n"


@pytest.fixture(scope="module")
def host_key():
    return new_host_key("web-1-host")


def _message(host_key, user_data=USER_CC, nets=NETS[:1]):
    files = seed_files(instance_id="web-1", hostname="web-1",
                       authorized_keys=["ssh-ed25519 AAAAC3Nz client@lab"],
                       host_key_private=host_key.private, host_key_public=host_key.public,
                       network=nets, user_data=user_data)
    return identity_message(name="web-1", nets=nets, macs=[("52:54:00:00:00:01", nets[0].mac)],
                            authorized_keys=["ssh-ed25519 AAAAC3Nz client@lab"],
                            host_key_private=host_key.private,
                            host_key_public=host_key.public, user_data=user_data,
                            seed_files=files), files


def test_identity_message_is_a_header_then_a_cpio_archive(host_key):
    msg, files = _message(host_key)
    head, _, body = msg.partition(b"\n")
    magic, length, seed, epoch = head.decode().split()
    assert magic == "NBCLONE1" and int(length) == len(body)
    assert re.fullmatch(r"[0-9a-f]{128}", seed)            # 64 bytes of the host's CSPRNG
    assert seed != _message(host_key)[0].split()[2].decode()   # a new one every time
    entries = {e.path: e for e in read_newc(body)}
    key = entries["etc/dropbear/dropbear_ed25519_host_key"]
    assert stat.S_IMODE(key.mode) == 0o600
    assert {f"run/cidata/{n}" for n in files} <= set(entries)
    assert entries["run/nbcloud/user-data"].data.decode() == USER_CC
    assert entries["run/nbcloud/authorized_keys"].data == b"ssh-ed25519 AAAAC3Nz client@lab\n"
    # the archive ends at cpio's trailer: busybox cpio stops there on a tty with no EOF
    assert body.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_dropbear_key_holds_the_pinned_key(host_key):
    blob = dropbear_ed25519(host_key.private)
    assert blob[:4] == b"\0\0\0\x0b" and blob[4:15] == b"ssh-ed25519"
    assert blob[15:19] == b"\0\0\0\x40" and len(blob) == 19 + 64
    public = ser.load_ssh_public_key(host_key.public.encode()).public_bytes(
        ser.Encoding.Raw, ser.PublicFormat.Raw)
    assert blob[19 + 32:] == public       # private half, then the public half


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")
def test_the_init_reads_a_clone_as_it_reads_the_same_seed(host_key, tmp_path):
    """read_clone (the identity the host sends) and read_seed (the cold path's ISO) give
    the guest the same name, addresses, keys and user-data."""
    msg, files = _message(host_key, nets=NETS)
    body = msg.partition(b"\n")[2]
    root = tmp_path / "clone"
    for e in read_newc(body):
        path = root / e.path
        if stat.S_ISDIR(e.mode):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(e.data)
    seed, cold = tmp_path / "cidata", tmp_path / "cold"
    seed.mkdir()
    cold.mkdir()
    for name, text in files.items():
        (seed / name).write_text(text)
    show = ('for v in MD_ID MD_HOST CC_HOST NICS MACS; do eval "x=\\"\\$$v\\""; '
            'printf "%s=%s\\n" "$v" "$(printf %s "$x" | tr "\\n" ";")"; done\n')
    got = {}
    for how, nb in (("read_clone", root / "run/nbcloud"), ("read_seed", cold)):
        script = f'NBCLOUD_INIT_LIB=1 . "{INIT}"\nNB="{nb}" SEED="{seed}"\n{how}\n{show}'
        out = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                             check=True).stdout
        got[how] = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    clone, cold_read = got["read_clone"], got["read_seed"]
    for var in ("MD_ID", "MD_HOST", "CC_HOST", "NICS"):
        assert clone[var] == cold_read[var], var
    assert clone["CC_HOST"] == "other"                     # the user's cloud-config wins
    assert nics_lines(NETS).replace("\n", ";").rstrip(";") == cold_read["NICS"].rstrip(";")
    assert cold_read["NICS"].count("eth") == 4              # eth0 and eth1, named twice
    assert clone["MACS"] == "52:54:00:00:00:01 52:54:00:ab:cd:01"
    nb = root / "run/nbcloud"
    assert (nb / "authorized_keys").read_text() == (cold / "authorized_keys").read_text()
    assert (nb / "script.runcmd").read_text() == (cold / "script.runcmd").read_text()
    assert (nb / "host_ed25519.pub").read_text().strip() == host_key.public


def test_nbreseed_is_a_tiny_static_program_that_asks_for_a_reseed(tmp_path):
    prog = tmp_path / "nbreseed"
    prog.write_bytes(nbreseed())
    prog.chmod(0o755)
    assert len(nbreseed()) == 147 and nbreseed()[:4] == b"\x7fELF"
    # on /dev/null the ioctl is refused: ENOTTY (25) is its exit status, so the program
    # ran and made the call (on /dev/urandom, as root, it reseeds the CRNG)
    with open("/dev/null", "rb") as null:
        assert subprocess.run([str(prog)], stdin=null).returncode == 25


def _base_xml(**kw):
    args = dict(name="nbcloud-warm-0123456789ab", mac="52:54:00:00:00:01", network="nbcloud",
                disk="/warm/base.qcow2", log="/warm/base.log", sock="/warm/base.sock",
                ram="/dev/shm/nbcloud-warm/tiny-1c-128m-0123456789ab.ram")
    return base_domain_xml(TINY, get_flavor("t.nano"), "qemu", **(args | kw))


def _qemu_args(root) -> list[str]:
    return [a.get("value") for a in root.iter(f"{{{lx.QEMU_NS}}}arg")]


def test_the_base_waits_on_a_virtio_console_with_its_ram_in_a_shared_file():
    root = ET.fromstring(_base_xml())
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet nbwarm=1"
    (console,) = [c for c in root.findall("devices/console") if c.get("type") == "unix"]
    assert console.find("target").attrib == {"type": "virtio", "port": "1"}
    args = _qemu_args(root)
    assert "memory-backend=nbcram" in args
    assert any(a.startswith("memory-backend-file,id=nbcram,size=134217728,") and
               a.endswith(",share=on") for a in args)
    assert [d.find("target").get("dev") for d in root.findall("devices/disk")] == ["vda"]
    # the staleness key hashes this XML: a flavor of another shape changes it
    assert _base_xml() != base_domain_xml(TINY, get_flavor("m.nano"), "qemu", **{
        k: v for k, v in dict(name="nbcloud-warm-0123456789ab", mac="52:54:00:00:00:01",
                              network="nbcloud", disk="/warm/base.qcow2", log="/warm/base.log",
                              sock="/warm/base.sock", ram="/r").items()})


def test_a_clone_takes_the_instances_identity_and_maps_the_ram_private():
    saved = _base_xml()
    own = lx.domain_xml(lx.DomainDef(
        name="web-1", vcpus=1, memory=128 << 20, uuid="6f1c0b6a-3d4e-4c1f-9a55-0a1b2c3d4e5f",
        boot=lx.KernelBoot("/img/tiny.vmlinuz", "/img/tiny.initrd", "console=ttyS0 quiet"),
        disks=(lx.Disk("/pool/web-1.root.qcow2", "vda"),
               lx.Disk("/pool/web-1.seed.iso", "vdb", fmt="raw", readonly=True)),
        nics=(lx.Nic("lab", "52:54:00:ab:cd:01", ip="10.9.0.7"),), console_log="/logs/web-1.log",
        metadata={"kind": "instance", "boot": "cloned"}))
    root = ET.fromstring(clone_domain_xml(saved, own, "/warm/sock/web-1.sock"))
    assert root.findtext("name") == "web-1"
    assert root.findtext("uuid") == "6f1c0b6a-3d4e-4c1f-9a55-0a1b2c3d4e5f"
    assert lx.parse_metadata(ET.tostring(root.find("metadata")[0], encoding="unicode")) == {
        "kind": "instance", "boot": "cloned"}
    (nic,) = root.findall("devices/interface")
    assert nic.find("mac").get("address") == "52:54:00:ab:cd:01"
    assert nic.find("source").attrib == {"network": "lab"}
    # anti-spoofing holds the clone to its own address (the base's NIC has no filter)
    (ref,) = nic.findall("filterref")
    assert ref.get("filter") == "nbcloud-antispoof"
    assert [(p.get("name"), p.get("value")) for p in ref] == [("IP", "10.9.0.7")]
    # the seed is plugged in after the restore (a device the base did not have)
    assert [d.find("source").get("file") for d in root.findall("devices/disk")] == [
        "/pool/web-1.root.qcow2"]
    assert {log.get("file") for log in root.iter("log")} == {"/logs/web-1.log"}
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet"   # its reboot is cold
    args = _qemu_args(root)
    assert args[-2:] == ["-incoming", "defer"]
    assert any(a.endswith(",share=off") for a in args) and not any("share=on" in a
                                                                   for a in args)
    snap = (f"<domainsnapshot><name>s1</name>{ET.tostring(root, encoding='unicode')}"
            "</domainsnapshot>")
    fixed = ET.fromstring(snapshot_without_clone_start(snap, own)).find("domain")
    assert "-incoming" not in _qemu_args(fixed)
    assert "memory-backend-ram,id=nbcram,size=134217728" in _qemu_args(fixed)
    assert snapshot_without_clone_start(f"<domainsnapshot>{own}</domainsnapshot>",
                                        own) is None


def test_a_guarded_clone_has_its_own_tap_and_no_libvirt_filter_until_a_revert():
    """In no security group, with its address known, a clone's first run is on a tap of
    nbcloud's name that nbcloud guards itself (tapguard.py); a snapshot of it reverts
    with the definition's filter, on a tap of libvirt's name."""
    from nbcloud.providers.libvirt.clone_domain import guardable
    own = lx.domain_xml(lx.DomainDef(
        name="web-1", vcpus=1, memory=128 << 20, uuid="6f1c0b6a-3d4e-4c1f-9a55-0a1b2c3d4e5f",
        boot=lx.KernelBoot("/img/tiny.vmlinuz", "/img/tiny.initrd", "console=ttyS0 quiet"),
        disks=(lx.Disk("/pool/web-1.root.qcow2", "vda"),),
        nics=(lx.Nic("lab", "52:54:00:ab:cd:01", ip="10.9.0.7"),), console_log="/l/w.log"))
    guard = guardable(own)
    assert guard == ("nbc6f1c0b6a3d4e", "52:54:00:ab:cd:01", "10.9.0.7")
    root = ET.fromstring(clone_domain_xml(_base_xml(), own, "/s/web-1.sock", guard[0]))
    (nic,) = root.findall("devices/interface")
    assert nic.findall("filterref") == []
    assert nic.find("target").get("dev") == "nbc6f1c0b6a3d4e"
    snap = (f"<domainsnapshot><name>s1</name>{ET.tostring(root, encoding='unicode')}"
            "</domainsnapshot>")
    (nic,) = ET.fromstring(snapshot_without_clone_start(snap, own)).findall(
        "domain/devices/interface")
    assert nic.find("target") is None
    (ref,) = nic.findall("filterref")
    assert (ref.get("filter"), ref.find("parameter").get("value")) == (
        "nbcloud-antispoof", "10.9.0.7")
    # a security group's filter, or no address: libvirt filters it as any instance
    grouped = own.replace('filter="nbcloud-antispoof"', 'filter="nbcloud-x-inst-web-1"')
    assert "nbcloud-x-inst-web-1" in grouped and guardable(grouped) is None
    bare = lx.domain_xml(lx.DomainDef(
        name="web-2", vcpus=1, memory=128 << 20, uuid="6f1c0b6a-3d4e-4c1f-9a55-0a1b2c3d4e50",
        boot=lx.KernelBoot("/k", "/i", "console=ttyS0"), disks=(lx.Disk("/p/r", "vda"),),
        nics=(lx.Nic("lab", "52:54:00:ab:cd:02"),), console_log="/l/w2.log"))
    assert guardable(bare) is None


def test_tap_guard_rules_are_libvirts_antispoofing_and_refuse_hostile_values():
    from nbcloud.providers.libvirt import tapguard
    script = tapguard.guard_script("nbc0123456789ab", "52:54:00:AB:cd:01", "10.9.0.7",
                                   stale=["nbcfedcba987654", "eth0; flush ruleset"])
    lines = script.splitlines()
    assert lines[:2] == ['delete element bridge nbcloud taps { "nbcfedcba987654" }',
                         "delete chain bridge nbcloud c_nbcfedcba987654"]   # gone taps
    rules = [line.split("c_nbc0123456789ab ", 1)[1] for line in lines
             if line.startswith("add rule")]
    assert rules == [
        "ether saddr != 52:54:00:ab:cd:01 drop",
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
        "ip saddr 10.9.0.7 accept", "ether type ip drop",
        "arp saddr ether != 52:54:00:ab:cd:01 drop", "arp saddr ip 10.9.0.7 accept",
        "arp saddr ip 0.0.0.0 accept", "ether type arp drop"]
    assert lines[-1] == ('add element bridge nbcloud taps '
                         '{ "nbc0123456789ab" : jump c_nbc0123456789ab }')
    assert "flush ruleset" not in script
    for tap, mac, ip in (("vnet0", "52:54:00:ab:cd:01", "10.9.0.7"),
                         ("nbc0123456789ab", "52:54:00:ab:cd:01; drop", "10.9.0.7"),
                         ("nbc0123456789ab", "52:54:00:ab:cd:01", "10.9.0.7 accept"),
                         ("nbc0123456789ab", "52:54:00:ab:cd:01", "::1")):
        with pytest.raises(tapguard.GuardError):
            tapguard.guard_script(tap, mac, ip)
    assert tapguard.taps_in(
        "<domain><devices><interface><target dev='nbc0123456789ab'/></interface>"
        "<interface><target dev='vnet3'/></interface></devices></domain>") == [
        "nbc0123456789ab"]


def test_no_clone_where_there_is_no_local_system_daemon(test_cloud):
    check = test_cloud.provider.clone_check(TINY, get_flavor("t.nano"), ("nbcloud",))
    assert (check.ok, check.base_missing) == (False, False)
    assert "local system daemon" in check.why
    with pytest.raises(InvalidSpec, match="boot 'sideways' is not allowed"):
        InstanceSpec("web", boot="sideways")


@pytest.mark.parametrize("kw, words", [
    (dict(screen=True), "a screen is a device"),
    (dict(networks=("a", "b")), "exactly one NIC"),
    (dict(networks=("user",)), "exactly one NIC"),
    (dict(shares=(("/h", "/g"),)), "synced folders"),
    (dict(flavor="d.nano"), "local disk"),
    (dict(image=Image("deb", "disk", "d" * 64, 1, disk="/d.qcow2")), "no warm-clone support"),
])
def test_kinds_of_instance_that_are_never_clones(test_cloud, monkeypatch, kw, words):
    provider = test_cloud.provider
    # as on the local system daemon, so that the instance's own kind decides
    monkeypatch.setattr(provider, "uri", "qemu:///system")
    monkeypatch.setitem(provider.paths, "warm", Path("/nonexistent"))
    monkeypatch.setattr(provider, "accelerator", lambda probe=True: {"accelerator": "tcg"})
    flavor = get_flavor(kw.pop("flavor", "t.nano"))
    check = provider.clone_check(kw.pop("image", TINY), flavor, kw.pop("networks", ("n",)),
                                 **kw)
    assert not check.ok and not check.base_missing and words in check.why


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")
def test_a_clones_fingerprint_lines_are_what_the_init_would_print(host_key, tmp_path):
    """The host makes a clone's console fingerprint lines (no program runs in the guest
    for them): the same lines the init prints from the key itself on a cold boot."""
    from nbcloud.images.clone_identity import fingerprint_lines
    (tmp_path / "host_ed25519.pub").write_text(host_key.public + "\n")
    applets = tmp_path / "bin"          # the guest's programs: busybox's
    applets.mkdir()
    for name in ("base64", "sha256sum", "xxd"):
        (applets / name).symlink_to(BUSYBOX)
    script = (f'NBCLOUD_INIT_LIB=1 . "{INIT}"\nNB="{tmp_path}" HOST=web-1\n'
              "print_fingerprints\n")
    cold = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                          timeout=30, env={"PATH": f"{applets}:/usr/bin:/bin"})
    made = fingerprint_lines("web-1", host_key.public)
    assert cold.stdout == made and "256 SHA256:" in made
    (tmp_path / "fingerprints").write_text(made)       # a clone: printed as made
    clone = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                           timeout=30)
    assert clone.stdout == made
