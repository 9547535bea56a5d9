"""XML builders round-trip through libvirt's test driver: build -> define -> XMLDesc ->
parse -> the same values."""
import xml.etree.ElementTree as ET

import libvirt
import pytest

from nbcloud.providers.libvirt import xml as lx


@pytest.fixture
def conn():
    c = libvirt.open("test:///default")
    yield c
    c.close()


def test_domain_round_trip(conn, unique):
    name = unique("dom")
    meta = {"kind": "instance", "stack": "adhoc", "image": "tiny", "ip": "10.77.0.5",
            "hostkey": "ssh-ed25519 AAAA x", "flavor": "t.nano"}
    d = lx.DomainDef(name=name, vcpus=2, memory=256 << 20, domain_type="test",
                     boot=lx.KernelBoot("/img/k", "/img/i", "console=ttyS0 quiet"),
                     disks=(lx.Disk("/pool/a.qcow2", "vda"),
                            lx.Disk("/pool/seed.iso", "vdb", fmt="raw", readonly=True)),
                     nics=(lx.Nic("default", "52:54:00:aa:bb:cc"),), metadata=meta)
    dom = conn.defineXMLFlags(lx.domain_xml(d), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    try:
        root = ET.fromstring(dom.XMLDesc(0))
        assert root.findtext("name") == name
        assert int(root.findtext("memory")) == 256 * 1024
        assert root.findtext("vcpu") == "2"
        assert root.findtext("os/kernel") == "/img/k"
        assert root.findtext("os/cmdline") == "console=ttyS0 quiet"
        disks = root.findall("devices/disk")
        assert [x.find("source").get("file") for x in disks] == ["/pool/a.qcow2",
                                                                 "/pool/seed.iso"]
        assert disks[1].find("readonly") is not None
        assert root.find("devices/interface/mac").get("address") == "52:54:00:aa:bb:cc"
        got = lx.parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, lx.NS))
        assert got == meta
    finally:
        dom.undefine()


def test_tcg_domain_has_qemu64_with_rdrand_and_the_smbios_serial():
    d = lx.DomainDef(name="x", vcpus=1, memory=64 << 20, domain_type="qemu",
                     smbios_serial="ds=nocloud")
    root = ET.fromstring(lx.domain_xml(d))
    assert root.find("cpu").get("mode") == "custom"
    assert root.findtext("cpu/model") == "qemu64"
    assert [f.get("name") for f in root.findall("cpu/feature")] == ["rdrand"]
    assert root.findtext("sysinfo/system/entry[@name='serial']") == "ds=nocloud"
    assert root.find("os/smbios").get("mode") == "sysinfo"
    plain = ET.fromstring(lx.domain_xml(lx.DomainDef(name="y", vcpus=1, memory=64 << 20)))
    assert plain.find("sysinfo") is None and plain.find("os/smbios") is None


def test_hostile_strings_are_escaped_not_interpreted(conn, unique):
    name = unique("esc")
    cmdline = "console=ttyS0 x='</cmdline><evil/>' & y"
    d = lx.DomainDef(name=name, vcpus=1, memory=64 << 20, domain_type="test",
                     boot=lx.KernelBoot("/k", "/i", cmdline), metadata={"stack": "<b>&"})
    dom = conn.defineXML(lx.domain_xml(d))
    try:
        root = ET.fromstring(dom.XMLDesc(0))
        assert root.findtext("os/cmdline") == cmdline
        assert root.find(".//evil") is None
    finally:
        dom.undefine()


def test_network_round_trip(conn, unique):
    name = unique("net")
    net = conn.networkDefineXML(lx.network_xml(name, "10.81.0.0/24", "nat", f"br{name}"))
    try:
        info = lx.parse_network(net.XMLDesc(0))
        assert (info.name, info.mode, info.gateway) == (name, "nat", "10.81.0.1")
        assert str(info.network) == "10.81.0.0/24"
        assert (info.dhcp_start, info.dhcp_end) == ("10.81.0.128", "10.81.0.254")
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                   libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1,
                   lx.dhcp_host_xml("52:54:00:00:00:01", "10.81.0.2", "web", 10),
                   libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG)
        info = lx.parse_network(net.XMLDesc(0))
        assert info.hosts == (("52:54:00:00:00:01", "10.81.0.2", "web"),)
        lease = ET.fromstring(net.XMLDesc(0)).find("ip/dhcp/host/lease")
        assert (lease.get("expiry"), lease.get("unit")) == ("10", "minutes")
    finally:
        net.undefine()


@pytest.mark.parametrize("mode", ["isolated", "routed", "open"])
def test_network_modes(conn, unique, mode):
    name = unique("net")
    net = conn.networkDefineXML(lx.network_xml(name, "10.82.0.0/24", mode, f"br{name}"))
    try:
        assert lx.parse_network(net.XMLDesc(0)).mode == mode
    finally:
        net.undefine()


def test_pool_and_overlay_volume(conn, unique):
    name = unique("pool")
    pool = conn.storagePoolDefineXML(lx.pool_xml(name, f"/{name}"))
    pool.create()
    try:
        base = pool.createXML(lx.volume_xml("base.qcow2", 1 << 30, "qcow2"), 0)
        over = pool.createXML(lx.volume_xml("o.qcow2", 1 << 30, "qcow2",
                                            (base.path(), "qcow2")), 0)
        root = ET.fromstring(over.XMLDesc(0))
        assert root.findtext("name") == "o.qcow2"
        assert int(root.findtext("capacity")) == 1 << 30
    finally:
        for vol in pool.listAllVolumes():
            vol.delete()
        pool.destroy()
        pool.undefine()
