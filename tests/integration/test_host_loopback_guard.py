"""A guest cannot reach a service that listens only on the host's 127.0.0.1, with or
without a port forward on its network (the CVE-2020-8558 pattern: `route_localnet` on a
bridge makes the host accept packets for 127.0.0.0/8 from that bridge).

The guest is made hostile on purpose: it drops its own loopback routes and routes
127.0.0.1 through its gateway, then tries TCP (busybox nc) and UDP (busybox tftp). The
host side is a TCP listener and a UDP socket on 127.0.0.1 only, in this process; a
witness thread records any SYN (`ss` SYN-RECV), connection or datagram from the guest.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nbcloud.core.errors import InvalidSpec
from tests.guest import (
    attack,
    banner,
    fresh_guest,
    route_loopback_via_gateway,
)

NAME, NET, CIDR = "sec-lo", "sec-lonet", "10.151.7.0/24"


def route_localnet(bridge: str) -> str:
    return Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip()


@pytest.fixture(scope="module")
def guest(cloud):
    for inst in fresh_guest(cloud, NAME, NET, CIDR, "m.nano"):
        route_loopback_via_gateway(inst, cloud.provider.network(NET).gateway)
        yield inst


def test_without_a_forward_nothing_reaches_the_hosts_loopback(cloud, guest):
    bridge = cloud.provider.network(NET).bridge
    assert route_localnet(bridge) == "0"
    assert attack(guest) == []


@pytest.mark.parametrize("host_address", ["127.0.0.1", ""])
def test_with_a_loopback_forward_nothing_reaches_the_hosts_loopback(cloud, guest,
                                                                      host_address):
    bridge = cloud.provider.network(NET).bridge
    fwd = cloud.floating.create(NAME, 22, host_address=host_address)
    try:
        assert route_localnet(bridge) == "1"      # what a loopback forward needs
        assert banner("127.0.0.1", fwd.host_port).startswith(b"SSH-2.0-dropbear")
        assert attack(guest) == []
    finally:
        cloud.floating.delete(fwd.name)
    assert route_localnet(bridge) == "0"          # the last one gone: off again


def test_a_forward_from_the_bridge_address_leaves_route_localnet_off(cloud, guest):
    info = cloud.provider.network(NET)
    fwd = cloud.floating.create(NAME, 22, host_address=info.gateway)
    try:
        assert route_localnet(info.bridge) == "0"
        assert banner(info.gateway, fwd.host_port).startswith(b"SSH-2.0-dropbear")
    finally:
        cloud.floating.delete(fwd.name)


def test_host_ports_of_the_host_are_refused(cloud, guest):
    before = (cloud.floating.list(), cloud.floating.live())
    for port in (22, 53, 1023):
        with pytest.raises(InvalidSpec, match="1024"):
            cloud.floating.create(NAME, 22, host_port=port)
    with pytest.raises(InvalidSpec, match="1024"):
        cloud.floating.create(NAME, 53, host_port=53, proto="udp")
    with socket.socket() as busy:     # a host service listening on 127.0.0.1 only
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(InvalidSpec, match="listens"):
            cloud.floating.create(NAME, 22, host_port=port)
    assert (cloud.floating.list(), cloud.floating.live()) == before


def test_tcp_and_udp_forwards_of_one_port_are_two_forwards(cloud, guest):
    tcp = cloud.floating.create(NAME, 22, host_port=24001)
    udp = cloud.floating.create(NAME, 53, host_port=24001, proto="udp")
    assert tcp.name != udp.name
    cloud.floating.delete(udp.name)
    assert tcp.name in cloud.floating.live() and udp.name not in cloud.floating.live()
    assert banner("127.0.0.1", 24001).startswith(b"SSH-2.0-dropbear")
    cloud.floating.delete(tcp.name)
    assert tcp.name not in cloud.floating.live()
