"""DNS records on the real daemon: names added with `cloud.dns` resolve from a guest
through the network's dnsmasq, and go away when deleted."""
from __future__ import annotations

import pytest

from nbcloud.errors import AlreadyExists, InvalidSpec
from waiting import wait_for

NET = "nbcloud"


@pytest.fixture(scope="module")
def guest(cloud):
    if cloud.backend.exists("lb-dns"):
        cloud.instances.delete("lb-dns")
    inst = cloud.instances.create("lb-dns", image="tiny", flavor="t.nano", network=NET)
    yield inst
    for r in cloud.dns.records(NET):
        if r.name.startswith("lb-"):
            cloud.dns.delete(NET, r.name)
    if cloud.backend.exists("lb-dns"):
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
    cloud.dns.add(NET, "lb-rec", "10.77.0.99")
    assert wait_for(lambda: _lookup(guest, "lb-rec") == "10.77.0.99", 20,
                    "lb-rec from the guest")
    assert _lookup(guest, f"lb-rec.{NET}") == "10.77.0.99"
    rows = {row["name"]: row for row in cloud.dns.table(NET)}
    assert rows["lb-rec"]["source"] == "added" and rows["lb-dns"]["source"] == "instance"


def test_cname_resolves_to_its_target_and_keeps_the_instance_name(cloud, guest):
    cloud.dns.add(NET, "lb-alias", cname="lb-dns")
    assert wait_for(lambda: _lookup(guest, "lb-alias") == guest.ip, 20, "lb-alias")
    assert _lookup(guest, "lb-dns") == guest.ip   # the instance's own record survives
    live = dict(cloud.backend.network(NET).dns_hosts)
    assert live[guest.ip] == ("lb-dns", "lb-alias")


def test_bad_records_are_refused_and_change_nothing(cloud, guest):
    before = cloud.backend.network(NET).dns_hosts
    with pytest.raises(AlreadyExists):
        cloud.dns.add(NET, "lb-dns", "10.77.0.98")      # an instance's name
    with pytest.raises(InvalidSpec, match="not an IPv4 address"):
        cloud.dns.add(NET, "lb-x", "10.77.0.300")
    with pytest.raises(InvalidSpec, match="not a name on network"):
        cloud.dns.add(NET, "lb-x", cname="lb-nothing")
    assert cloud.backend.network(NET).dns_hosts == before


def test_delete_removes_the_name_from_dnsmasq(cloud, guest):
    cloud.dns.delete(NET, "lb-rec")
    cloud.dns.delete(NET, "lb-alias")
    wait_for(lambda: _lookup(guest, "lb-rec") == "", 20, "lb-rec gone")
    assert _lookup(guest, "lb-alias") == ""
    assert _lookup(guest, "lb-dns") == guest.ip
