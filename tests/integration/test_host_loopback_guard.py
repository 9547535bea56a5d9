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
import subprocess
import threading
import time
from pathlib import Path

import pytest

from nbcloud.core.errors import InvalidSpec
from tests.integration.guests import banner, fresh_guest

NAME, NET, CIDR = "sec-lo", "sec-lonet", "10.151.7.0/24"


class Witness:
    """A TCP listener and a UDP socket on 127.0.0.1 (one port), and what reached them."""

    def __init__(self):
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.tcp.listen(8)
        self.tcp.settimeout(0.1)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.1)
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ss", "-Htn", "state", "syn-recv",
                                  f"( sport = :{self.port} )"],
                                 capture_output=True, text=True).stdout
            self.seen += [f"SYN from {line.split()[-1]}" for line in out.splitlines()]
            for sock, what in ((self.tcp, "connection"), (self.udp, "datagram")):
                try:
                    if sock.type == socket.SOCK_STREAM:
                        conn, peer = sock.accept()
                        conn.close()
                    else:
                        _, peer = sock.recvfrom(2048)
                    self.seen.append(f"{what} from {peer}")
                except OSError:
                    pass

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        self.tcp.close()
        self.udp.close()
        return sorted(set(self.seen))


def route_loopback_via_gateway(guest, gateway: str) -> None:
    """Make the guest send 127.0.0.1 out of eth0 to its gateway, as an attacker would."""
    guest.ssh("sysctl -qw net.ipv4.conf.all.route_localnet=1 "
              "net.ipv4.conf.eth0.route_localnet=1; "
              "ip route del local 127.0.0.0/8 dev lo table local 2>/dev/null; "
              "ip route del local 127.0.0.1 dev lo table local 2>/dev/null; "
              f"ip route replace 127.0.0.1/32 via {gateway} dev eth0")
    assert f"via {gateway}" in guest.ssh("ip route get 127.0.0.1")


def attack(guest) -> list[str]:
    """What reached a witness on the host's 127.0.0.1 while the guest tried TCP and UDP."""
    witness = Witness()
    guest.ssh_result(f"echo hi | timeout 6 nc -w 4 127.0.0.1 {witness.port}; "
                     f"timeout 4 tftp -g -r x -l /tmp/x 127.0.0.1 {witness.port}",
                     check=False, timeout=30)
    time.sleep(1)
    return witness.close()


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
