"""The topology on the real daemon: a network, a volume and a tiny instance using both; the
figure's nodes, edges, hover and colours against what libvirt itself shows (read here with
libvirt-python, not through nbcloud), then the live figure following a stop and deletes."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from nbcloud.ui.topology import LiveTopology
from nbcloud.workflows.topology import STATE_COLOURS, STYLES

NET, CIDR, VOL, VM = "tp-topo-net", "10.213.50.0/24", "tp-topo-vol", "tp-topo-vm"


def _clean(cloud) -> None:
    if cloud.provider.exists(VM):
        cloud.instances.delete(VM)
    if any(v.name == VOL for v in cloud.volumes.list()):
        cloud.volumes.delete(VOL)
    if NET in cloud.provider.network_names():
        cloud.networks.delete(NET)


@pytest.fixture(scope="module")
def world(cloud):
    """The network, the volume, and the instance on that network with the volume."""
    _clean(cloud)
    cloud.networks.create(NET, CIDR, "isolated")
    cloud.volumes.create(VOL, "64M", "ssd")
    # no wait for SSH: what is asserted is what libvirt shows, not the guest
    inst = cloud.instances.create(VM, image="tiny", flavor="t.nano", network=NET,
                                  volumes=[VOL], wait=False)
    yield inst
    _clean(cloud)


def libvirt_view(uri: str) -> dict:
    """What libvirt shows of VM, read directly: its state, the networks of its NICs (with
    the reserved address of each MAC), and the volumes and pools of its disks."""
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(VM)
        root = ET.fromstring(dom.XMLDesc(0))
        macs = {i.find("mac").get("address"): i.find("source").get("network")
                for i in root.findall("devices/interface")}
        paths = {d.find("source").get("file") for d in root.findall("devices/disk")
                 if d.find("source") is not None}
        ips = {}
        for mac, net in macs.items():
            # the reservation is in the network's definition (its running dnsmasq may
            # have it as a file, not in libvirt's live XML)
            net_root = ET.fromstring(conn.networkLookupByName(net).XMLDesc(
                libvirt.VIR_NETWORK_XML_INACTIVE))
            for host in net_root.findall("ip/dhcp/host"):
                if host.get("mac") == mac:
                    ips[net] = host.get("ip")
        volumes = {}
        for pool in conn.listAllStoragePools(0):
            if pool.name() in ("nbcloud", "nbcloud-images") or not pool.isActive():
                continue
            for vol in pool.listAllVolumes(0):
                if vol.path() in paths:
                    volumes[vol.name().split(".")[0]] = pool.name()
        running = dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        return {"networks": set(macs.values()), "ips": ips, "volumes": volumes,
                "running": running}
    finally:
        conn.close()


def test_figure_matches_libvirt_and_follows_changes(cloud, world):
    topo = LiveTopology(cloud, widget=False)
    try:
        seen = libvirt_view(cloud.uri)
        assert seen["networks"] == {NET} and set(seen["volumes"]) == {VOL}
        g = topo.graph
        vm = ("instance", VM)
        assert {e for e in g.edges if vm in e} == \
            {tuple(sorted([vm, ("network", n)])) for n in seen["networks"]} | \
            {tuple(sorted([vm, ("volume", v)])) for v in seen["volumes"]}
        pool = ("pool", seen["volumes"][VOL])
        assert tuple(sorted([("volume", VOL), pool])) in g.edges
        assert g.nodes[vm].state == ("running" if seen["running"] else "stopped") == "running"
        assert g.nodes[("volume", VOL)].state == "attached"
        assert dict(g.nodes[("network", NET)].details)["cidr"] == CIDR
        # the figure's own data
        inst = next(t for t in topo.figure.data if t.meta == "instance")
        i = list(inst.text).index(VM)
        assert f"ip: {seen['ips'][NET]} ({NET})" in inst.hovertext[i]
        assert "flavor: t.nano" in inst.hovertext[i]
        assert inst.marker.color[i] == STYLES["instance"].colour
        assert inst.x[i] == STYLES["instance"].column
        where = (inst.x[i], inst.y[i])

        world.stop(timeout=10)                           # the inventory says stopped
        assert topo.refresh_if_changed() is True
        assert libvirt_view(cloud.uri)["running"] is False
        inst = next(t for t in topo.figure.data if t.meta == "instance")
        i = list(inst.text).index(VM)
        assert topo.graph.nodes[vm].state == "stopped"
        assert inst.marker.color[i] == STATE_COLOURS["stopped"]
        assert (inst.x[i], inst.y[i]) == where           # same place

        cloud.instances.delete(VM)                       # its volume stays, detached
        assert topo.refresh_if_changed() is True
        assert vm not in topo.graph.nodes
        assert topo.graph.nodes[("volume", VOL)].state == "available"
        assert not any(("volume", VOL) in e and e[0][0] == "instance" or
                       ("volume", VOL) in e and e[1][0] == "instance"
                       for e in topo.graph.edges)
        cloud.volumes.delete(VOL)
        cloud.networks.delete(NET)
        topo.refresh()
        assert not {("volume", VOL), ("network", NET)} & set(topo.graph.nodes)
    finally:
        topo.close()
