"""`%cloud export heat` on a real OpenStack: a stack's cell exported as a HOT template and
made by Heat (`openstack stack create`, the cloud's own client, as the user would) from
the template alone; the cloud (an admin's view) shows what the stack declares."""
from __future__ import annotations

import os
import socket
import subprocess

from nbcloud.workflows import export
from tests.waiting import wait_for
from tests.openstack.conftest import CLOUD, servers

STACK = "ok-heat"
BODY = """
network:
  ok-hnet: {cidr: 10.83.0.0/24, mode: nat}
volume:
  ok-hvol: {size: 1G, tier: hdd}
secgroup:
  ok-hweb: {rules: ["tcp 80", "tcp 8080 from ok-hweb"]}
instance:
  ok-hsrv: {image: tiny, flavor: m.nano, network: [ok-hnet], volume: [ok-hvol],
            secgroup: [ok-hweb]}
"""


def openstack(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["openstack", "--os-cloud", CLOUD, *args], capture_output=True,
                          text=True, timeout=900, check=check, env=os.environ)


def test_heat_makes_what_the_stack_declares(os_cloud, admin_conn, tmp_path):
    openstack("stack", "delete", "--wait", "-y", STACK, check=False)
    # the stack as `apply` records it (applying it first would cost the tier a server
    # boot and its deletion, and test nothing of the export: test_stacks applies)
    os_cloud.inventory.put_stack(STACK, BODY)
    try:
        hot = export.heat(os_cloud.services, STACK).save(tmp_path / "stack.yaml")
    finally:
        os_cloud.inventory.remove_stack(STACK)
    assert servers(admin_conn, "ok-hsrv") == []
    try:
        made = openstack("stack", "create", "--wait", "-t", str(hot), STACK, "-f", "value",
                         "-c", "stack_status", check=False)
        assert made.stdout.split()[-1:] == ["CREATE_COMPLETE"], made.stdout + made.stderr
        project = os_cloud.provider.project_id
        # the network, its subnet and a router to the external network
        (net,) = admin_conn.network.networks(name="ok-hnet", project_id=project)
        (sub,) = admin_conn.network.subnets(network_id=net.id)
        assert sub.cidr == "10.83.0.0/24"
        (router,) = admin_conn.network.routers(name=f"{STACK}-ok-hnet", project_id=project)
        public = admin_conn.network.get_network(router.external_gateway_info["network_id"])
        assert public.is_router_external
        # the server on it, of that flavor, in the group and the SSH group
        (server,) = servers(admin_conn, "ok-hsrv")
        assert (server.status, server.flavor["original_name"]) == ("ACTIVE", "m.nano")
        assert list(server.addresses) == ["ok-hnet"]
        assert {g["name"] for g in server.security_groups} == {"ok-hweb", f"{STACK}-ssh"}
        (group,) = admin_conn.network.security_groups(name="ok-hweb", project_id=project)
        rules = {(r.protocol, r.port_range_min, r.remote_ip_prefix,
                  r.remote_group_id) for r in admin_conn.network.security_group_rules(
                      security_group_id=group.id) if r.direction == "ingress"}
        assert rules == {("tcp", 80, "0.0.0.0/0", None), ("tcp", 8080, None, group.id)}
        # the volume, of the tier's type, attached to it
        (vol,) = [v for v in admin_conn.block_storage.volumes(all_projects=True,
                                                              name="ok-hvol")]
        assert (vol.size, vol.volume_type, vol.status) == (1, "hdd", "in-use")
        assert vol.attachments[0]["server_id"] == server.id
        # and a floating IP that reaches its SSH server from here
        (port,) = admin_conn.network.ports(device_id=server.id)
        (fip,) = admin_conn.network.ips(port_id=port.id)

        def banner() -> bool:
            try:
                with socket.create_connection((fip.floating_ip_address, 22), timeout=5) as s:
                    return s.recv(8).startswith(b"SSH-")
            except OSError:
                return False
        wait_for(banner, 300, "the Heat server's SSH banner", interval=2)
    finally:
        openstack("stack", "delete", "--wait", "-y", STACK, check=False)
    assert servers(admin_conn, "ok-hsrv") == []
    assert not list(admin_conn.network.networks(name="ok-hnet"))
