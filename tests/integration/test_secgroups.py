"""Security groups on real guests: nwfilters enforced by the host between two neighbours.

sg-a serves HTTP (busybox httpd) and is in a group that allows SSH only; sg-b tries to
fetch the page with `nc -w 3`. A rule naming a second group lets sg-b through once it is
a member of that group, and not before or after.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest

from nbcloud.core.errors import InvalidSpec
from nbcloud.providers.libvirt.xml import BASE_FILTER
from nbcloud.ui import commands
from nbcloud.ui.commands import CommandError
from tests.guest import group_filter_of, instance_filter_of, udp_noports

NAMES = ("sg-a", "sg-b")
GROUPS = ("sg-ssh", "sg-web", "sg-udp")
PAGE = "hello-from-sg-a"


def _cleanup(cloud):
    for g in cloud.secgroups.list():
        if g.name in GROUPS:
            for inst in list(g.instances):
                if cloud.provider.exists(inst):
                    cloud.secgroups.detach(g.name, inst)
    for g in GROUPS[::-1]:
        if g in {x.name for x in cloud.secgroups.list()}:
            for r in cloud.secgroups.get(g).rules:
                cloud.secgroups.delete_rule(g, r.id)
    for g in GROUPS:
        if g in {x.name for x in cloud.secgroups.list()}:
            cloud.secgroups.delete(g)
    for n in NAMES:
        if cloud.provider.exists(n):
            cloud.instances.delete(n)


@pytest.fixture(scope="module")
def pair(cloud):
    _cleanup(cloud)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda n: cloud.instances.create(n, image="tiny", flavor="t.nano",
                                                           network="nbcloud"), NAMES)
    a.ssh(f"mkdir -p /www && echo {PAGE} > /www/index.html && httpd -p 80 -h /www")
    yield a, b
    _cleanup(cloud)
    assert not {instance_filter_of(cloud, n) for n in NAMES} & \
        set(cloud.provider.nwfilter_names())


def fetch(b, ip) -> tuple[int, str]:
    """(exit status, page) of an HTTP GET from guest `b`, giving up after 3 s. busybox nc,
    because the static busybox wget of the tiny image segfaults (rc 139)."""
    r = b.ssh_result(f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80",
                     check=False, timeout=30)
    page = r.stdout.split("\r\n\r\n", 1)[-1].strip() if "200 OK" in r.stdout else ""
    return (r.returncode if page else r.returncode or 1), page


def filterrefs(cloud, name) -> set[str]:
    return {f for inactive in (False, True)
            for f in cloud.provider.interface_filters(name, inactive).values()}


def sg(cloud, *words):
    return commands.run(cloud, commands.parse(["secgroup", *words]))


def test_group_allows_ssh_only_then_a_group_rule_lets_a_member_in(cloud, pair):
    a, b = pair
    assert fetch(b, a.ip) == (0, PAGE)  # no group: open

    sg(cloud, "create", "sg-ssh")
    sg(cloud, "rule", "add", "sg-ssh", "--proto", "tcp", "--port", "22")
    sg(cloud, "attach", "sg-ssh", "sg-a")
    # the running guest's interface and its definition both reference the filter
    assert filterrefs(cloud, "sg-a") == {instance_filter_of(cloud, "sg-a")}
    inst_filter = cloud.provider.nwfilter(instance_filter_of(cloud, "sg-a"))
    assert inst_filter.refs == (BASE_FILTER, group_filter_of(cloud, "sg-ssh"))

    code, out = fetch(b, a.ip)
    assert code != 0 and PAGE not in out, "HTTP got through a group allowing 22 only"
    a.close()  # a new SSH connection, not the established one
    assert a.ssh("hostname").strip() == "sg-a"

    # a rule naming another group: lets in that group's members, nobody else
    sg(cloud, "create", "sg-web")
    sg(cloud, "rule", "add", "sg-web", "--proto", "tcp", "--port", "22")
    sg(cloud, "rule", "add", "sg-ssh", "--proto", "tcp", "--port", "80",
       "--source-group", "sg-web")
    assert fetch(b, a.ip)[0] != 0
    sg(cloud, "attach", "sg-web", "sg-b")
    rules = cloud.provider.nwfilter(group_filter_of(cloud, "sg-ssh")).rules
    assert any(r.match.get("srcipaddr") == b.ip and r.match.get("dstportstart") == "80"
               for r in rules)
    assert fetch(b, a.ip) == (0, PAGE)

    # a bad rule: one line, nothing changed (inventory and libvirt)
    before = (cloud.secgroups.get("sg-ssh").rules,
              cloud.provider.nwfilter(group_filter_of(cloud, "sg-ssh")).rules)
    with pytest.raises(InvalidSpec, match="1-65535"):
        sg(cloud, "rule", "add", "sg-ssh", "--proto", "tcp", "--port", "70000")
    with pytest.raises(CommandError):
        sg(cloud, "rule", "add", "sg-ssh", "--proto", "gre")
    with pytest.raises(InvalidSpec, match="IPv4"):
        sg(cloud, "rule", "add", "sg-ssh", "--port", "80", "--source", "10.0.0.300/8")
    assert (cloud.secgroups.get("sg-ssh").rules,
            cloud.provider.nwfilter(group_filter_of(cloud, "sg-ssh")).rules) == before

    # membership is followed: out of sg-web, sg-b is blocked again
    sg(cloud, "detach", "sg-web", "sg-b")
    assert filterrefs(cloud, "sg-b") == {BASE_FILTER}   # anti-spoofing stays
    assert fetch(b, a.ip)[0] != 0
    assert not any(r.match.get("srcipaddr") == b.ip
                   for r in cloud.provider.nwfilter(group_filter_of(cloud, "sg-ssh")).rules)

    # detaching the group restores open access, live
    sg(cloud, "detach", "sg-ssh", "sg-a")
    assert filterrefs(cloud, "sg-a") == {BASE_FILTER}
    assert fetch(b, a.ip) == (0, PAGE)
    xml = ET.fromstring(cloud.provider.domain_xml_desc("sg-a"))
    ref = xml.find("devices/interface/filterref")
    assert (ref.get("filter"), ref.find("parameter").get("value")) == (BASE_FILTER, a.ip)


def test_group_in_use_cannot_be_deleted(cloud, pair):
    sg(cloud, "create", "sg-web") if "sg-web" not in {g.name for g in
                                                       cloud.secgroups.list()} else None
    sg(cloud, "attach", "sg-web", "sg-b")
    with pytest.raises(Exception, match="detach it first"):
        sg(cloud, "delete", "sg-web")
    assert group_filter_of(cloud, "sg-web") in cloud.provider.nwfilter_names()
    sg(cloud, "detach", "sg-web", "sg-b")


def received_udp(a, b, port: int = 5353) -> bool:
    """Whether a datagram from `b` reaches `a`'s kernel: the tiny image's busybox has no
    UDP server, so `a` counts it (/proc/net/snmp Udp NoPorts: a datagram for a port
    nobody listens on) and `b` sends it as a TFTP request (busybox tftp)."""
    before = udp_noports(a)
    b.ssh_result(f"timeout 3 tftp -g -r probe -l /dev/null {a.ip} {port}", check=False,
                 timeout=30)
    return udp_noports(a) > before


def pings(b, ip) -> bool:
    return b.ssh_result(f"ping -c 1 -W 2 {ip}", check=False, timeout=30).returncode == 0


def test_udp_icmp_and_cidr_rules_then_rule_delete_and_group_delete(cloud, pair):
    a, b = pair
    assert pings(b, a.ip) and received_udp(a, b)      # no group: open
    sg(cloud, "create", "sg-udp")
    sg(cloud, "rule", "add", "sg-udp", "--proto", "tcp", "--port", "22")
    sg(cloud, "attach", "sg-udp", "sg-a")
    assert not pings(b, a.ip) and not received_udp(a, b)

    # icmp and udp from sg-b's own address (a /32 CIDR), and tcp 80 from a network that
    # does not hold sg-b: what libvirt's filter holds, and what gets through
    sg(cloud, "rule", "add", "sg-udp", "--proto", "icmp", "--source", f"{b.ip}/32")
    sg(cloud, "rule", "add", "sg-udp", "--proto", "udp", "--port", "5353",
       "--source", f"{b.ip}/32")
    sg(cloud, "rule", "add", "sg-udp", "--proto", "tcp", "--port", "80",
       "--source", "192.0.2.0/24")
    rules = cloud.provider.nwfilter(group_filter_of(cloud, "sg-udp")).rules
    assert any(r.protocol == "icmp" and r.match.get("srcipaddr") == b.ip for r in rules)
    assert any(r.protocol == "udp" and r.match.get("srcipaddr") == b.ip
               and r.match.get("dstportstart") == "5353" for r in rules)
    assert any(r.protocol == "tcp" and r.match.get("srcipaddr") == "192.0.2.0"
               and r.match.get("srcipmask") == "24" for r in rules)
    assert pings(b, a.ip) and received_udp(a, b)
    assert fetch(b, a.ip)[0] != 0                     # 80 is open to 192.0.2.0/24 only

    # rule delete: the icmp rule goes from the inventory and from libvirt, and pings stop
    icmp = next(r for r in cloud.secgroups.get("sg-udp").rules if r.proto == "icmp")
    sg(cloud, "rule", "delete", "sg-udp", str(icmp.id))
    assert not [r for r in cloud.provider.nwfilter(group_filter_of(cloud, "sg-udp")).rules
                if r.protocol == "icmp"]
    assert not pings(b, a.ip) and received_udp(a, b)

    # a group no instance uses is deleted: from the inventory and from libvirt
    sg(cloud, "detach", "sg-udp", "sg-a")
    sg(cloud, "delete", "sg-udp")
    assert "sg-udp" not in {g.name for g in cloud.secgroups.list()}
    assert group_filter_of(cloud, "sg-udp") not in cloud.provider.nwfilter_names()
    assert pings(b, a.ip)
