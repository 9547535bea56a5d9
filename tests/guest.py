"""What a test reads inside a tiny guest, with the busybox it has; a guest of its own on a
network of its own, for tests that change what the host forwards or filters; a guest turned
hostile (routing the host's loopback through its gateway); and witnesses: the SSH banner (a
port leads to a guest), a loopback listener (what reached the host's 127.0.0.1)."""
from __future__ import annotations

import socket
import subprocess
import threading
import time


def udp_noports(inst) -> int:
    """The guest kernel's count of datagrams for a port nobody listens on (/proc/net/snmp
    Udp NoPorts): how a test sees UDP arrive, the tiny image having no UDP server."""
    head, values = inst.ssh("grep ^Udp: /proc/net/snmp").splitlines()[:2]
    return int(dict(zip(head.split()[1:], values.split()[1:]))["NoPorts"])


def banner(host: str, port: int, timeout: float = 5.0) -> bytes:
    """The first bytes a TCP server at host:port sends (an SSH banner)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        return s.recv(64)


def fresh_guest(cloud, name: str, network: str, cidr: str, flavor: str = "t.nano"):
    """Yield a new instance `name` on network `network` (made if missing); remove both
    afterwards. A leftover of an earlier run (its forwards too) is removed first."""
    for f in cloud.floating.list():
        if f.instance == name:
            cloud.floating.delete(f.name)
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    if network not in cloud.provider.network_names():
        cloud.networks.create(network, cidr)
    yield cloud.instances.create(name, image="tiny", flavor=flavor, network=network)
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    cloud.networks.delete(network)


def group_filter_of(cloud, group: str) -> str:
    """The nwfilter name of security group `group` of `cloud`'s inventory."""
    from nbcloud.providers.libvirt.firewall import group_filter
    return group_filter(cloud.secgroups.owner, group)


def instance_filter_of(cloud, instance: str) -> str:
    """The nwfilter name of member instance `instance` of `cloud`'s inventory."""
    from nbcloud.providers.libvirt.firewall import instance_filter
    return instance_filter(cloud.secgroups.owner, instance)


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
