"""`%cloud network create --mode routed|open` on the real daemon: what libvirt defines, the
host firewall rules libvirt adds (or, for `open`, does not), and a guest on both networks
reaching the host's address on another network through its default route."""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

from nbcloud.ui import commands

NAME = "nc-nm-vm"
NETS = {"routed": ("nc-nm-routed", "10.154.1.0/24"), "open": ("nc-nm-open", "10.154.2.0/24")}


def _cleanup(cloud):
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    for name, _cidr in NETS.values():
        if name in cloud.provider.network_names():
            cloud.networks.delete(name)


@pytest.fixture(scope="module")
def guest(cloud):
    _cleanup(cloud)
    for mode, (name, cidr) in NETS.items():
        commands.run(cloud, commands.parse(["network", "create", name, "--cidr", cidr,
                                            "--mode", mode]))
    inst = cloud.instances.create(NAME, flavor="t.nano",
                                  network=[NETS["routed"][0], NETS["open"][0]])
    yield inst
    _cleanup(cloud)
    assert not {n for n, _c in NETS.values()} & set(cloud.provider.network_names())


def rules(table: str) -> str:
    return subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True,
                          check=True).stdout


def test_libvirt_defines_the_forward_modes(cloud, guest):
    for mode, (name, cidr) in NETS.items():
        xml = ET.fromstring(cloud.provider.conn.networkLookupByName(name).XMLDesc())
        assert xml.find("forward").get("mode") == {"routed": "route", "open": "open"}[mode]
        info = cloud.provider.network(name)
        assert (info.mode, str(info.network)) == (mode, cidr)
    listed = {row["network"]: row["mode"] for row in
              commands.run(cloud, commands.parse(["network", "list"]))}
    assert (listed[NETS["routed"][0]], listed[NETS["open"][0]]) == ("routed", "open")


def test_routed_is_not_masqueraded_and_open_gets_no_rules(cloud, guest):
    nat, flt = rules("nat"), rules("filter")
    routed_cidr, open_cidr = NETS["routed"][1], NETS["open"][1]
    assert f"-s {routed_cidr}" not in nat            # routed: no NAT for its addresses
    assert f"-d {routed_cidr}" in flt or f"-s {routed_cidr}" in flt   # but forwarded
    open_bridge = cloud.provider.network(NETS["open"][0]).bridge
    assert open_cidr not in nat + flt and open_bridge not in nat + flt   # open: none


def test_the_guest_reaches_across_the_host_by_routing(cloud, guest):
    # the host answers on each network's gateway; from the routed network the host routes
    # to the default network's gateway, a host address on another bridge
    gateways = {mode: str(cloud.provider.network(n).gateway) for mode, (n, _c)
                in NETS.items()}
    for gw in gateways.values():
        assert guest.ssh_result(f"ping -c 1 -W 3 {gw}", check=False).returncode == 0, gw
    other = str(cloud.provider.network("nbcloud").gateway)
    assert guest.ssh_result(f"ping -c 1 -W 3 {other}", check=False).returncode == 0
    # both addresses are the guest's own, one per NIC
    addrs = guest.ssh("ip -4 addr show | grep -o 'inet [0-9.]*'")
    assert addrs.count("inet 10.154.1.") == 1 and addrs.count("inet 10.154.2.") == 1
