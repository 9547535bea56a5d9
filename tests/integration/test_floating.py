"""Port forwards on the real host: nftables DNAT from loopback and from the bridge's host
address to a guest's SSH port, listed, restored, removed one by one and with the instance.

The guest sits on a network of its own (not `nbcloud`), so the forward has to find the
instance's own bridge (route_localnet is set there only)."""
from __future__ import annotations

import socket
import subprocess

import pytest

from nbcloud.core.errors import AlreadyExists, InvalidSpec
from nbcloud.services import keys, ssh
from nbcloud.ui import commands
from tests.waiting import wait_for
from tests.guest import banner, fresh_guest, udp_noports

NAME = "sg-fwd"
NET, CIDR = "sg-fnet", "10.97.31.0/24"


def refused(host: str, port: int) -> bool:
    try:
        banner(host, port)
    except OSError:
        return True
    return False


def fl(cloud, *words):
    return commands.run(cloud, commands.parse(["floating", *words]))


@pytest.fixture(scope="module")
def guest(cloud):
    yield from fresh_guest(cloud, NAME, NET, CIDR)


def test_forward_from_loopback_and_bridge_address_to_guest_ssh(cloud, guest):
    lo = fl(cloud, "create", NAME, "--port", "22", "--host-port", "2222",
            "--host-address", "127.0.0.1")
    assert (lo.host_port, lo.guest_ip, lo.port) == (2222, guest.ip, 22)
    assert banner("127.0.0.1", 2222).startswith(b"SSH-2.0-dropbear")
    # a whole SSH session through the forward, the guest's pinned host key checked
    meta = guest.meta
    client = ssh.connect("127.0.0.1", port=2222, host_key=meta["hostkey"],
                         key_path=keys.login_key(meta.get("key", "default")))
    try:
        assert ssh.run(client, "hostname").stdout.strip() == NAME
    finally:
        client.close()

    anyaddr = fl(cloud, "create", NAME, "--port", "22")  # any host address, a free port
    assert 20000 <= anyaddr.host_port < 30000
    gateway = cloud.provider.network(NET).gateway  # the bridge's host address
    assert banner(gateway, anyaddr.host_port).startswith(b"SSH-2.0-dropbear")
    assert banner("127.0.0.1", anyaddr.host_port).startswith(b"SSH-2.0-dropbear")
    assert refused("127.0.0.1", 2223)  # nothing else is forwarded

    listed = {row["name"] for row in fl(cloud, "list")}
    assert listed >= {lo.name, anyaddr.name}
    live = cloud.floating.live()
    assert sorted(live[lo.name]) == ["output", "postrouting", "prerouting"]

    # nft rules do not outlive the host (or its namespace): restore puts them back
    subprocess.run(["nft", "delete", "table", "ip", "nbcloud"], check=True)
    assert refused("127.0.0.1", 2222)
    assert {row["rules"] for row in fl(cloud, "list")} >= {"missing: `floating restore`"}
    assert set(cloud.floating.restore()) >= {lo.name, anyaddr.name}
    assert banner("127.0.0.1", 2222).startswith(b"SSH-2.0-dropbear")

    # udp: a datagram to the host's port reaches the guest's kernel (counted in its Udp
    # NoPorts: nothing listens there, the tiny image has no UDP server)
    udp = fl(cloud, "create", NAME, "--port", "5353", "--proto", "udp", "--host-port",
             "5354")
    rules = subprocess.run(["nft", "list", "table", "ip", "nbcloud"], capture_output=True,
                           text=True, check=True).stdout
    assert f"udp dport 5354 dnat to {guest.ip}:5353" in rules, rules
    before = udp_noports(guest)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"to-the-guest", (gateway, 5354))
    wait_for(lambda: udp_noports(guest) > before, 30, "the datagram to reach the guest")
    fl(cloud, "delete", udp.name)
    assert "dport 5354" not in subprocess.run(["nft", "list", "table", "ip", "nbcloud"],
                                              capture_output=True, text=True).stdout

    # bad input: one line, nothing changed
    before = (cloud.floating.list(), cloud.floating.live())
    with pytest.raises(InvalidSpec, match="1 to 65535"):
        fl(cloud, "create", NAME, "--port", "70000")
    with pytest.raises(InvalidSpec, match="not an address of this host"):
        fl(cloud, "create", NAME, "--port", "22", "--host-address", "192.0.2.1")
    with pytest.raises(AlreadyExists):
        fl(cloud, "create", NAME, "--port", "80", "--host-port", "2222")
    assert (cloud.floating.list(), cloud.floating.live()) == before

    fl(cloud, "delete", lo.name)
    assert refused("127.0.0.1", 2222)
    assert lo.name not in cloud.floating.live()
    assert banner("127.0.0.1", anyaddr.host_port).startswith(b"SSH-2.0-dropbear")

    # deleting the instance removes its forwards (rules and records)
    cloud.instances.delete(NAME)
    assert anyaddr.name not in cloud.floating.live()
    assert not [f for f in cloud.floating.list() if f.instance == NAME]
    assert refused("127.0.0.1", anyaddr.host_port)
