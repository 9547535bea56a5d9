"""Security groups that an address thief cannot walk through, on real guests.

sec-target runs SSH (dropbear, port 22) and is in group sec-srv, which allows tcp 22 from
the members of sec-friends. sec-member is in sec-friends; sec-thief is in no group (a
warm clone, whose tap nbcloud guards itself). Once sec-member is stopped, sec-thief takes
its address (as a second address, with the route to the target through it, and
answering ARP for it) and tries the door that the group rule opens for that address. An egress-limited group may send DNS to its network's own
resolver (the gateway) and nowhere else.

And two inventories on one daemon: a group of one never rewrites the filter of the
other's group of the same name, and one cannot filter the other's instance.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from nbcloud.core.errors import CloudError
from nbcloud.providers.libvirt import tapguard
from tests.guest import instance_filter_of
from tests.real_daemon import open_cloud

NET, CIDR = "sec-sgnet", "10.151.9.0/24"
TARGET, MEMBER, THIEF = "sec-target", "sec-member", "sec-thief"
GROUPS = ("sec-srv", "sec-friends", "sec-out")


def _cleanup(cloud):
    for g in cloud.secgroups.list():
        if g.name in GROUPS:
            for inst in list(g.instances):
                cloud.secgroups.detach(g.name, inst) if cloud.provider.exists(inst) \
                    else cloud.secgroups.instance_deleted(inst)
    for g in GROUPS:
        if g in {x.name for x in cloud.secgroups.list()}:
            cloud.secgroups.delete(g)
    for n in (TARGET, MEMBER, THIEF):
        if cloud.provider.exists(n):
            cloud.instances.delete(n)


@pytest.fixture(scope="module")
def guests(cloud):
    _cleanup(cloud)
    if NET not in cloud.provider.network_names():
        cloud.networks.create(NET, CIDR)
    # the thief is a warm clone: in no group, its tap is guarded by nbcloud's own rules
    # (tapguard.py), not libvirt's filter; the others boot cold, filtered by libvirt
    flavors = {TARGET: "m.nano", MEMBER: "m.nano", THIEF: "t.nano"}
    with ThreadPoolExecutor(3) as pool:
        made = list(pool.map(lambda n: cloud.instances.create(n, image="tiny",
                                                              flavor=flavors[n], network=NET),
                             (TARGET, MEMBER, THIEF)))
    cloud.secgroups.create("sec-friends")
    cloud.secgroups.create("sec-srv")
    cloud.secgroups.add_rule("sec-srv", proto="tcp", port="22", source_group="sec-friends")
    cloud.secgroups.attach("sec-srv", TARGET)
    cloud.secgroups.attach("sec-friends", MEMBER)
    yield dict(zip((TARGET, MEMBER, THIEF), made))
    _cleanup(cloud)
    cloud.networks.delete(NET)


def knock(guest, ip: str, port: int = 22) -> str:
    """What a TCP connection from `guest` to ip:port answers within 3 s ('' if none)."""
    return guest.ssh_result(f"timeout 5 nc -w 3 {ip} {port} </dev/null | head -c 20",
                            check=False, timeout=30).stdout


def test_a_thief_of_a_members_address_gets_nothing_through_a_group_rule(cloud, guests):
    target, member, thief = guests[TARGET], guests[MEMBER], guests[THIEF]
    assert thief.boot == "cloned"
    assert tapguard.taps_in(cloud.provider.domain_xml_desc(THIEF))
    assert knock(member, target.ip).startswith("SSH-2.0")      # the rule works
    assert knock(thief, target.ip) == ""                       # the thief, as itself
    stolen, thief_mac = member.ip, thief.meta["mac"].split(",")[0].lower()
    target.ssh_result(f"ping -c 1 -W 2 {stolen}", check=False)  # the target knows it
    member.stop()
    try:
        thief.ssh(f"ip addr add {stolen}/32 dev eth0; "
                  f"ip route replace {target.ip}/32 dev eth0 src {stolen}; "
                  f"arping -c 2 -U -I eth0 -s {stolen} {stolen} >/dev/null 2>&1; true")
        assert f"src {stolen}" in thief.ssh(f"ip route get {target.ip}")
        assert knock(thief, target.ip) == "", "a stolen address got through a group rule"
        # nor did its ARP claim of the address reach the target
        assert thief_mac not in target.ssh(f"ip neigh show {stolen}").lower()
    finally:
        thief.ssh(f"ip route del {target.ip}/32; ip addr del {stolen}/32 dev eth0; true")
        member.start()


def test_an_egress_limited_group_sends_dns_to_its_resolver_only(cloud, guests):
    target, member = guests[TARGET], guests[MEMBER]
    gateway = cloud.provider.network(NET).gateway
    # a DNS server elsewhere: the target answers tcp 53 (busybox nc), ingress open to it
    cloud.secgroups.detach("sec-srv", TARGET)
    target.ssh("(while true; do echo DNS-ELSEWHERE | nc -l -p 53; done) "
               ">/dev/null 2>&1 </dev/null &")
    assert knock(member, target.ip, 53).startswith("DNS-ELSEWHERE")   # not limited yet
    cloud.secgroups.create("sec-out", [])
    cloud.secgroups.add_rule("sec-out", proto="tcp", port="80", source="10.151.9.0/24",
                             egress=True)
    cloud.secgroups.attach("sec-out", MEMBER)
    try:
        assert knock(member, target.ip, 53) == "", "DNS went out to another address"
        answer = member.ssh_result(f"nslookup {TARGET} {gateway}", check=False,
                                   timeout=30).stdout
        assert target.ip in answer                      # the network's own resolver
    finally:
        cloud.secgroups.detach("sec-out", MEMBER)
        cloud.secgroups.attach("sec-srv", TARGET)


def test_another_inventory_never_rewrites_this_ones_filters(cloud, guests,
                                                            tmp_path_factory):
    other = open_cloud(tmp_path_factory, "sec-other")
    try:
        mine = {r.describe() for r in cloud.secgroups.get("sec-srv").rules}
        other.secgroups.create("sec-srv")                  # the same group name
        other.secgroups.add_rule("sec-srv", proto="tcp", port="8080")
        assert {r.describe() for r in cloud.secgroups.get("sec-srv").rules} == mine
        # the guest's filter still lets the member in, and only through port 22
        assert knock(guests[MEMBER], guests[TARGET].ip).startswith("SSH-2.0")
        with pytest.raises(CloudError, match="inventory"):
            other.secgroups.attach("sec-srv", TARGET)      # not the other's instance
        assert knock(guests[MEMBER], guests[TARGET].ip).startswith("SSH-2.0")
        assert TARGET not in other.secgroups.get("sec-srv").instances
        assert instance_filter_of(other, TARGET) not in cloud.provider.nwfilter_names()
    finally:
        if "sec-srv" in {g.name for g in other.secgroups.list()}:
            other.secgroups.delete("sec-srv")
        other.close()
    assert knock(guests[MEMBER], guests[TARGET].ip).startswith("SSH-2.0")
