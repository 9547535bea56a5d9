"""TCG domains get a bounded translation-block cache (bench/memory.py measured why); KVM
and test-driver domains get no <tcg> element."""
import xml.etree.ElementTree as ET

import pytest

from nbcloud.backend.libvirt import xml as lx


def _domain(domain_type: str) -> ET.Element:
    return ET.fromstring(lx.domain_xml(lx.DomainDef(
        name="bn-tb", vcpus=1, memory=128 << 20, domain_type=domain_type,
        boot=lx.KernelBoot("/k", "/i", "console=ttyS0"))))


def test_tcg_domain_has_the_tb_cache_size():
    tb = _domain("qemu").find("features/tcg/tb-cache")
    assert tb is not None
    assert tb.get("unit") == "MiB"
    assert int(tb.text) == lx.TCG_TB_CACHE_MIB
    assert 16 <= lx.TCG_TB_CACHE_MIB < 1024


@pytest.mark.parametrize("domain_type", ["kvm", "test"])
def test_other_domain_types_have_no_tcg_element(domain_type):
    assert _domain(domain_type).find("features/tcg") is None


def test_test_driver_accepts_a_tcg_domain_definition(test_cloud):
    """libvirt parses (and keeps) the element: the XML is valid for its schema."""
    import libvirt
    conn = test_cloud.backend.conn
    text = lx.domain_xml(lx.DomainDef(name="bn-tb-def", vcpus=1, memory=128 << 20,
                                      domain_type="qemu",
                                      boot=lx.KernelBoot("/k", "/i", "")))
    flags = getattr(libvirt, "VIR_DOMAIN_DEFINE_VALIDATE", 0)
    dom = conn.defineXMLFlags(text.replace("type=\"qemu\"", "type=\"test\"", 1), flags)
    try:
        kept = ET.fromstring(dom.XMLDesc(0)).find("features/tcg/tb-cache")
        assert kept is not None and kept.text == str(lx.TCG_TB_CACHE_MIB * 1024)
    finally:
        dom.undefine()
