"""DNS records on the real daemon: names added with `cloud.dns` resolve from a guest
through the network's dnsmasq, and go away when deleted."""
from __future__ import annotations

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import AlreadyExists, InvalidSpec

NET = "nbcloud"
# A record's address must be on its network; the gateway (where balancers listen) is one
# no guest holds. An address a guest holds would not do: dnsmasq names that guest's DHCP
# lease after the record and answers the name from the lease until it expires, record
# deleted or not.
REC_IP = "10.77.0.1"


@pytest.fixture(scope="module")
def guest(cloud):
    if cloud.provider.exists("lb-dns"):
        cloud.instances.delete("lb-dns")
    inst = cloud.instances.create("lb-dns", image="tiny", flavor="t.nano", network=NET)
    yield inst
    for r in cloud.dns.records(NET):
        if r.name.startswith("lb-"):
            cloud.dns.delete(NET, r.name)
    if cloud.provider.exists("lb-dns"):
        cloud.instances.delete("lb-dns")


def _lookup(inst, name: str) -> str:
    """The address the guest's resolver (the network's dnsmasq) gives `name`, or ''."""
    out = inst.ssh(f"nslookup -type=a {name} 2>/dev/null", check=False)
    answers = out.split("Name:", 1)[1] if "Name:" in out else ""
    for line in answers.splitlines():
        if line.startswith("Address"):
            return line.split()[-1]
    return ""


def test_a_record_resolves_from_a_guest(cloud, guest):
    cloud.dns.add(NET, "lb-www", REC_IP)
    assert wait_for(lambda: _lookup(guest, "lb-www") == REC_IP, 20, "lb-www from the guest")
    assert _lookup(guest, f"lb-www.{NET}") == REC_IP
    rows = {row["name"]: row for row in cloud.dns.table(NET)}
    assert rows["lb-www"]["source"] == "added" and rows["lb-dns"]["source"] == "instance"


def test_cname_resolves_to_its_target_and_keeps_the_instance_name(cloud, guest):
    cloud.dns.add(NET, "lb-alias", cname="lb-dns")
    assert wait_for(lambda: _lookup(guest, "lb-alias") == guest.ip, 20, "lb-alias")
    assert _lookup(guest, "lb-dns") == guest.ip   # the instance's own record survives
    live = dict(cloud.provider.network(NET).dns_hosts)
    assert live[guest.ip] == ("lb-dns", "lb-alias")


def _ours(cloud) -> list:
    """The network's DNS records that name our resources (others share the network)."""
    return [h for h in cloud.provider.network(NET).dns_hosts
            if any(n.startswith("lb-") for n in h[1])]


def test_bad_records_are_refused_and_change_nothing(cloud, guest):
    before = _ours(cloud)
    with pytest.raises(AlreadyExists):
        cloud.dns.add(NET, "lb-dns", REC_IP)            # an instance's name
    with pytest.raises(InvalidSpec, match="not an IPv4 address"):
        cloud.dns.add(NET, "lb-x", "192.0.2.300")
    with pytest.raises(InvalidSpec, match="not an address on network"):
        cloud.dns.add(NET, "lb-x", "192.0.2.11")        # outside the network
    with pytest.raises(InvalidSpec, match="not a name on network"):
        cloud.dns.add(NET, "lb-x", cname="lb-nothing")
    assert _ours(cloud) == before


def test_a_record_squatting_a_name_refuses_a_new_instance(cloud, guest):
    """A record made before an instance of that name (squatting it) refuses the
    instance, in one line, before anything is made."""
    cloud.dns.add(NET, "lb-squat", REC_IP)
    try:
        with pytest.raises(AlreadyExists, match="DNS") as err:
            cloud.instances.create("lb-squat", image="tiny", flavor="t.nano", network=NET)
        assert "\n" not in str(err.value)
        assert not cloud.provider.exists("lb-squat")
        assert not [h for h in cloud.provider.network(NET).hosts if h[2] == "lb-squat"]
        assert not [r for r in cloud.inventory.resources(cloud.uri, "instance")
                    if r.name == "lb-squat"]
    finally:
        cloud.dns.delete(NET, "lb-squat")


def test_delete_removes_the_name_from_dnsmasq(cloud, guest):
    cloud.dns.delete(NET, "lb-www")
    cloud.dns.delete(NET, "lb-alias")
    # what was deleted no longer resolves to what it pointed at (a name can live on in a
    # DHCP lease of dnsmasq's for another address: not ours to say)
    wait_for(lambda: _lookup(guest, "lb-www") != REC_IP, 20, "lb-www gone")
    assert _lookup(guest, "lb-alias") != guest.ip
    assert not _ours(cloud) or all("lb-www" not in names and "lb-alias" not in names
                                   for _ip, names in _ours(cloud))
    assert _lookup(guest, "lb-dns") == guest.ip
