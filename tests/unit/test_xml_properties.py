"""Property: arbitrary strings in every name or field either fail validation or
round-trip exactly through the XML libvirt stores; none ever adds an element or attribute."""
import xml.etree.ElementTree as ET

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbcloud.core.errors import InvalidSpec
from nbcloud.core.spec import check_name
from nbcloud.providers.libvirt import xml as lx

any_text = st.text(max_size=60)
names = st.one_of(any_text, st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))


def shape(root: ET.Element) -> list[tuple[str, tuple[str, ...]]]:
    """Every element's tag and attribute names, in document order."""
    return [(el.tag, tuple(sorted(el.attrib))) for el in root.iter()]


@pytest.fixture(scope="module")
def conn():
    c = libvirt.open("test:///default")
    yield c
    c.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, cmdline=any_text, stack=any_text, hostkey=any_text, kernel=any_text)
def test_domain_fields_round_trip_or_fail_validation(conn, name, cmdline, stack, hostkey,
                                                     kernel):
    try:
        check_name(name, "instance name")
    except InvalidSpec:
        return                      # refused at the edge: never reaches XML
    meta = {"kind": "instance", "stack": stack, "hostkey": hostkey}
    d = lx.DomainDef(name=name, vcpus=1, memory=64 << 20, domain_type="test",
                     boot=lx.KernelBoot("/k" + kernel.replace("/", ""), "/i", cmdline),
                     metadata=meta)
    reference = lx.DomainDef(name=name, vcpus=1, memory=64 << 20, domain_type="test",
                             boot=lx.KernelBoot("/k", "/i", "x"),
                             metadata={"kind": "i", "stack": "s", "hostkey": "h"})
    try:
        built = ET.fromstring(lx.domain_xml(d))
    except ValueError:
        return                      # characters XML cannot carry: refused, nothing built
    assert shape(built) == shape(ET.fromstring(lx.domain_xml(reference)))
    try:
        dom = conn.defineXML(lx.domain_xml(d))
    except libvirt.libvirtError:
        # libvirt may refuse a value (e.g. a path), but it must not be able to
        # interpret it as structure: the shape check above already holds
        return
    try:
        root = ET.fromstring(dom.XMLDesc(0))
        assert root.findtext("name") == name
        assert (root.findtext("os/cmdline") or "") == cmdline
        got = lx.parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, lx.NS))
        assert got == meta
    finally:
        dom.undefine()


@settings(max_examples=200, deadline=None)
@given(mac=st.text(max_size=20), hostname=st.text(max_size=20), ip=st.text(max_size=20))
def test_dhcp_host_never_gains_structure(mac, hostname, ip):
    try:
        text = lx.dhcp_host_xml(mac, ip, hostname)
    except ValueError:
        return                      # characters XML cannot carry: refused, nothing built
    root = ET.fromstring(text)
    assert shape(root) == [("host", ("ip", "mac", "name"))]
    assert (root.get("mac"), root.get("name"), root.get("ip")) == (mac, hostname, ip)


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=30), path=st.text(max_size=30))
def test_pool_and_volume_xml_never_gain_structure(name, path):
    try:
        pool = ET.fromstring(lx.pool_xml(name, path))
    except ValueError:
        return
    assert shape(pool) == [("pool", ("type",)), ("name", ()), ("target", ()), ("path", ())]
    assert (pool.findtext("name"), pool.findtext("target/path")) == (name, path)
    vol = ET.fromstring(lx.volume_xml(name, 1, "qcow2", (path, "qcow2")))
    assert vol.findtext("backingStore/path") == path
