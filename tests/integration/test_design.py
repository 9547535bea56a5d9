"""A design from the palette applied on the real daemon: the server runs on the designed
NAT network with the designed volume (as libvirt and the guest itself show), and the
stack destroys cleanly."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest
from tests.waiting import wait_for

from nbcloud.ui.design import DesignPalette

STACK, VM, NET, CIDR, VOL = "tp-dstack", "tp-dweb", "tp-dnet", "10.213.51.0/24", "tp-ddata"


@pytest.fixture
def clean(cloud):
    def sweep():
        if any(r.stack == STACK for r in cloud.inventory.resources(cloud.uri)):
            cloud.stacks.destroy(STACK)
        if cloud.provider.exists(VM):
            cloud.instances.delete(VM)
        if any(v.name == VOL for v in cloud.volumes.list()):
            cloud.volumes.delete(VOL)
        if NET in cloud.provider.network_names():
            cloud.networks.delete(NET)
    sweep()
    yield
    sweep()


def test_applied_design_creates_what_it_shows(cloud, clean):
    d = DesignPalette(cloud, STACK, widget=False)
    d.add("server", VM)
    d.add("internet", NET, cidr=CIDR)
    d.connect(VM, NET)
    d.add("ssd", VOL, size="64M")
    d.connect(VM, VOL)
    plan = d.apply()
    assert plan.applied and {(a.op, a.kind, a.name) for a in plan.actions} == {
        ("create", "network", NET), ("create", "volume", VOL), ("create", "instance", VM)}

    conn = libvirt.open(cloud.uri)
    try:
        dom = conn.lookupByName(VM)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        root = ET.fromstring(dom.XMLDesc(0))
        assert [i.find("source").get("network") for i in root.findall(
            "devices/interface")] == [NET]
        net = ET.fromstring(conn.networkLookupByName(NET).XMLDesc(0))
        assert net.find("forward").get("mode") == "nat"            # Internet = NAT
        assert net.find("ip").get("address").startswith("10.213.51.")
        serials = {d.findtext("serial") for d in root.findall("devices/disk")}
        assert VOL in serials
    finally:
        conn.close()
    # the guest sees the designed volume by its serial (hot-plugged after boot: a moment)
    inst = cloud.instances.get(VM)
    wait_for(lambda: VOL in inst.ssh("for d in /sys/block/vd*; do cat $d/serial; echo; "
                                     "done 2>/dev/null").split(), 30,
             f"{VOL} to appear in the guest")
    # the stack is the design's: destroying it removes all three
    cloud.stacks.destroy(STACK)
    assert not cloud.provider.exists(VM)
    assert NET not in cloud.provider.network_names()
    assert VOL not in {v.name for v in cloud.volumes.list()}
