"""Security groups on a real OpenStack: Neutron enforces them between two servers. os-sa
serves HTTP; os-sb fetches it through the tenant network. A group with no rule for port
80 blocks it; a rule naming os-sb's group lets it through. Neutron's agent applies a
change in its own loop, seconds later: the test waits for it, bounded."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.waiting import wait_for

NAMES = ("os-sa", "os-sb")
PAGE = "hello-from-os-sa"


def _cleanup(cloud):
    for g in ("os-web", "os-client"):
        if g in {x.name for x in cloud.secgroups.list()}:
            for inst in list(cloud.secgroups.get(g).instances):
                if cloud.provider.exists(inst):
                    cloud.secgroups.detach(g, inst)
    for g in ("os-web", "os-client"):
        if g in {x.name for x in cloud.secgroups.list()}:
            for r in cloud.secgroups.get(g).rules:
                cloud.secgroups.delete_rule(g, r.id)
            cloud.secgroups.delete(g)
    for n in NAMES:
        if cloud.provider.exists(n):
            cloud.instances.delete(n)


@pytest.fixture(scope="module")
def pair(os_cloud):
    _cleanup(os_cloud)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda n: os_cloud.instances.create(n, flavor="m.nano"), NAMES)
    a.ssh(f"mkdir -p /www && echo {PAGE} > /www/index.html && httpd -p 80 -h /www")
    yield a, b
    _cleanup(os_cloud)


def fetch(b, ip: str) -> str:
    r = b.ssh_result(f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80", check=False,
                     timeout=60)
    return r.stdout.split("\r\n\r\n", 1)[-1].strip() if "200 OK" in r.stdout else ""


def test_a_group_blocks_then_a_group_rule_allows(os_cloud, pair, admin_conn):
    a, b = pair
    a_ip = a.meta["ips"].split("=", 1)[1]
    assert fetch(b, a_ip) == PAGE                   # no group: not filtered, as on libvirt
    groups = os_cloud.secgroups
    groups.create("os-client")
    groups.create("os-web")
    groups.add_rule("os-web", proto="tcp", port="22")
    groups.attach("os-web", "os-sa")
    groups.attach("os-client", "os-sb")
    wait_for(lambda: fetch(b, a_ip) == "", 120, "Neutron to block port 80")
    # what Neutron has: os-sa's port is in nbcloud-sg-os-web, which allows tcp 22 only
    port = next(admin_conn.network.ports(device_id=a.uuid))
    names = {admin_conn.network.get_security_group(i).name for i in port.security_group_ids}
    assert "nbcloud-sg-os-web" in names and "nbcloud-open" not in names
    groups.add_rule("os-web", proto="tcp", port="80", source_group="os-client")
    wait_for(lambda: fetch(b, a_ip) == PAGE, 120, "a member of os-client to get in")
    groups.detach("os-client", "os-sb")
    wait_for(lambda: fetch(b, a_ip) == "", 120, "os-sb kept out once it left os-client")
