"""Servers on a real OpenStack: booted by Nova, reached by SSH with the host key nbcloud
pinned (through cloud-config, never trusted on first use), through a floating IP that the
namespace reaches; deleted with everything nbcloud gave them."""
from __future__ import annotations

import socket

import pytest

from nbcloud.core.errors import SSHError
from nbcloud.services import ssh
from tests.openstack.conftest import fresh_instance, servers

NAME = "os-inst"


@pytest.fixture(scope="module")
def server(os_cloud):
    with fresh_instance(os_cloud, NAME, image="tiny", flavor="m.nano") as inst:
        yield inst


def test_nova_runs_it_with_nbclouds_mark(server, admin_conn):
    (nova,) = servers(admin_conn, NAME)
    assert nova.status == "ACTIVE"
    assert nova.metadata["nbcloud:kind"] == "instance"
    assert nova.metadata["nbcloud:hostkey"] == server.meta["hostkey"]
    assert nova.flavor["original_name"] == "m.nano"


def test_ssh_with_the_pinned_host_key(server):
    assert server.ssh("hostname").strip() == NAME
    # the key the guest presents is the one nbcloud made and put in its cloud-config: its
    # console prints the fingerprints it has, and they are the pinned one
    console = server.console()
    assert ssh.fingerprint(server.meta["hostkey"]).split()[0] in console
    # an impostor key is refused: pin another key and connect afresh
    from nbcloud.core.cloudinit import new_host_key
    real = server.meta
    server.provider.set_metadata(NAME, {**real, "hostkey": new_host_key().public})
    server.close()
    try:
        with pytest.raises(SSHError, match="host key"):
            server.ssh("true")
    finally:
        server.provider.set_metadata(NAME, real)
        server.close()
    assert server.ssh("true") == ""


def test_a_floating_address_reaches_it_from_the_namespace(os_cloud, server, admin_conn):
    fwd = os_cloud.floating.create(NAME, 22)
    fips = [f for f in admin_conn.network.ips(all_projects=True)
            if f.floating_ip_address == fwd.host_address]
    assert fips and fips[0].port_id, "the address is a floating IP on the server's port"
    with socket.create_connection((fwd.host_address, 22), timeout=30) as s:
        assert s.recv(8).startswith(b"SSH-")
    assert fwd.name in os_cloud.floating.live()
    with pytest.raises(Exception, match="--host-port"):
        os_cloud.floating.create(NAME, 80, host_port=8080)
    os_cloud.floating.delete(fwd.name)


def test_delete_leaves_no_server_and_no_floating_ip(os_cloud, server, admin_conn):
    address = server.meta["ip"]
    os_cloud.instances.delete(NAME)
    assert servers(admin_conn, NAME) == []
    assert address not in {f.floating_ip_address for f in admin_conn.network.ips()}
    assert not [r for r in os_cloud.ctx.inventory.all("instance") if r.name == NAME]
