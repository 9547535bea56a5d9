"""User-mode networking on the system daemon: the same path the session tier takes, so
the system-tier run covers it too. The forwarded port is inside the test namespace."""
from __future__ import annotations

import socket


def test_instance_on_user_network_answers_ssh_through_loopback(cloud):
    name = "un-web"
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    inst = cloud.instances.create(name, image="tiny", flavor="t.nano", network="user")
    try:
        assert inst.ip == "127.0.0.1" and inst.ssh_port > 1024
        with socket.create_connection(("127.0.0.1", inst.ssh_port), timeout=5) as s:
            assert s.recv(8).startswith(b"SSH-")
        out = inst.ssh("ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf")
        assert "10.0.2.15/24" in out and "default via 10.0.2.2" in out
        assert "nameserver 10.0.2.3" in out
        # libvirt sees no interface: the NIC is QEMU's own netdev
        assert "<interface" not in cloud.provider.conn.lookupByName(name).XMLDesc(0)
    finally:
        cloud.instances.delete(name)
    assert name not in cloud.provider.managed()
    assert not [r for r in cloud.inventory.resources(cloud.uri) if r.name == name]
