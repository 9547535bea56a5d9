"""Disk, iotune and cdrom XML round-trip through libvirt's test driver: build -> define ->
XMLDesc -> parse -> the same values; and an ISO made from a folder reads back."""
import xml.etree.ElementTree as ET

import libvirt
import pycdlib
import pytest

from nbcloud.core.errors import CloudError
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.volumes import TIERS
from nbcloud.services.cdroms import build_iso


@pytest.fixture
def conn():
    c = libvirt.open("test:///default")
    yield c
    c.close()


def define_with(conn, name: str, *disks: lx.DataDisk) -> libvirt.virDomain:
    """A domain from `domain_xml` with `disks` added as `attachDeviceFlags` would."""
    base = lx.DomainDef(name=name, vcpus=1, memory=64 << 20, domain_type="test",
                        boot=lx.KernelBoot("/k", "/i", "console=ttyS0"),
                        disks=(lx.Disk("/pool/seed.iso", "vda", fmt="raw", readonly=True),))
    root = ET.fromstring(lx.domain_xml(base))
    for d in disks:
        root.find("devices").append(ET.fromstring(lx.disk_xml(d)))
    return conn.defineXMLFlags(ET.tostring(root, encoding="unicode"),
                               libvirt.VIR_DOMAIN_DEFINE_VALIDATE)


def test_data_disk_with_tier_caps_round_trips(conn, unique):
    disks = (lx.DataDisk("/pools/ssd/data.ssd.qcow2", "vdb", serial="data",
                         iotune=TIERS["ssd"]),
             lx.DataDisk("/pools/hdd/logs.hdd.qcow2", "vdc", serial="logs",
                         iotune=TIERS["hdd"]))
    dom = define_with(conn, unique("sdisk"), *disks)
    try:
        got = lx.parse_disks(dom.XMLDesc(0))
        assert got[1:] == list(disks)
        assert got[2].iotune == lx.IOTune(10_000_000, 100)
    finally:
        dom.undefine()


def test_iso_as_readonly_virtio_disk_and_as_sata_cdrom_round_trip(conn, unique):
    disks = (lx.DataDisk("/pools/ssd/tools.iso", "vdb", fmt="raw", serial="tools",
                         readonly=True),
             lx.DataDisk("/pools/ssd/more.iso", "sda", fmt="raw", serial="more",
                         readonly=True, device="cdrom", bus="sata"))
    dom = define_with(conn, unique("scd"), *disks)
    try:
        got = lx.parse_disks(dom.XMLDesc(0))
        assert got[1:] == list(disks)
        assert got[0].readonly and got[0].target == "vda"
    finally:
        dom.undefine()


def test_disk_xml_element_order_and_no_caps_when_none():
    el = ET.fromstring(lx.disk_xml(lx.DataDisk("/p/x.qcow2", "vdb", serial="x")))
    assert [c.tag for c in el] == ["driver", "source", "target", "serial"]
    assert el.find("driver").get("cache") == "none"
    assert el.find("iotune") is None and el.find("readonly") is None


@pytest.mark.parametrize("hostile", ["a</serial><evil/>", "x' y='1", "&amp;<>"])
def test_hostile_serial_and_path_are_text_not_xml(conn, unique, hostile):
    d = lx.DataDisk(f"/p/{hostile}.qcow2", "vdb", serial=hostile)
    el = ET.fromstring(lx.disk_xml(d))
    assert el.find(".//evil") is None and len(el.find("target").attrib) == 2
    assert lx.parse_disks(f"<domain><devices>{lx.disk_xml(d)}</devices></domain>") == [d]


def test_tiers_hdd_is_capped_below_ssd():
    assert TIERS["hdd"].total_bytes_sec * 5 <= TIERS["ssd"].total_bytes_sec
    assert TIERS["hdd"].total_iops_sec < TIERS["ssd"].total_iops_sec


def test_iso_from_a_folder_keeps_names_with_joliet_and_rock_ridge(tmp_path):
    src = tmp_path / "src"
    (src / "sub dir").mkdir(parents=True)
    (src / "hello.txt").write_text("hello\n")
    (src / "sub dir" / "A longer Name.conf").write_bytes(b"\x00nested")
    out = tmp_path / "x.iso"
    assert build_iso(src, out, "tools") == 2
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        assert iso.has_rock_ridge() and iso.has_joliet()
        for facade, path in ((iso.get_rock_ridge_facade(), "/sub dir/A longer Name.conf"),
                             (iso.get_joliet_facade(), "/sub dir/A longer Name.conf")):
            import io
            buf = io.BytesIO()
            facade.get_file_from_iso_fp(buf, path)
            assert buf.getvalue() == b"\x00nested"
        assert iso.pvd.volume_identifier.strip() == b"TOOLS"
    finally:
        iso.close()


def test_iso_refuses_a_missing_folder_and_special_files(tmp_path):
    with pytest.raises(CloudError, match="not a directory"):
        build_iso(tmp_path / "nope", tmp_path / "x.iso")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to("/etc/passwd")
    with pytest.raises(CloudError, match="neither a file nor a folder"):
        build_iso(tmp_path / "d", tmp_path / "x.iso")
