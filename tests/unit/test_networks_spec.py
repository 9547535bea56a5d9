"""Networks on libvirt's test driver: overlap refusal, bridge names, DNS host records,
the refusals of delete, and the `%cloud network` grammar."""
from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

import libvirt
import pytest
from IPython.core.error import UsageError

from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotManaged
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.networks import BRIDGE_MAX, bridge_name, is_managed
from nbcloud.services.networks import overlapping
from nbcloud.ui import commands

# Each test takes its own /24 out of 10.90-10.119: the test driver's state is per process.
_next_net = iter(range(90, 120))


@pytest.fixture
def cidr():
    return f"10.{next(_next_net)}.0.0/24"


def _info(name: str, cidr: str, bridge: str = "") -> lx.NetworkInfo:
    net = ipaddress.IPv4Network(cidr)
    return lx.NetworkInfo(name, bridge, "nat", net, str(next(net.hosts())), "", "", ())


def _state(cloud) -> tuple:
    return (cloud.provider.network_names(), cloud.inventory.operations(10_000),
            cloud.inventory.resources())


# --- pure functions ---------------------------------------------------------------------

@pytest.mark.parametrize("new,hit", [
    ("10.1.0.0/24", "a"), ("10.1.0.128/25", "a"), ("10.0.0.0/8", "a"),
    ("10.2.0.0/16", "b"), ("10.3.0.0/24", None), ("192.168.0.0/24", None),
])
def test_overlap_detection(new, hit):
    infos = [_info("a", "10.1.0.0/24"), _info("b", "10.2.3.0/24")]
    found = overlapping(ipaddress.IPv4Network(new), infos)
    assert (found.name if found else None) == hit


def test_bridge_names_are_short_and_unique():
    long = "a" + "b" * 62
    first = bridge_name(long, set())
    assert first == "nbc-abbbbbbbbb" and len(first) <= BRIDGE_MAX
    taken = {first}
    for _ in range(20):
        name = bridge_name(long, taken)
        assert len(name) <= BRIDGE_MAX and name not in taken
        taken.add(name)
    assert bridge_name("lab", set()) == "nbc-lab"
    # two networks sharing their first ten characters get two bridges
    assert bridge_name("project-x-one", {"nbc-project-x-"}) != "nbc-project-x-"


def test_managed_means_default_network_or_our_bridge_prefix():
    assert is_managed(_info("nbcloud", "10.77.0.0/24", "virbr-nbcloud"))
    assert is_managed(_info("lab", "10.80.0.0/24", "nbc-lab"))
    assert not is_managed(_info("default", "192.168.122.0/24", "virbr0"))


# --- DNS host records (reserve/release use config-only XML, which the test driver lacks:
# the integration tier checks them on the real daemon) -----------------------------------

def test_dns_host_xml_round_trips_through_libvirt(unique, cidr):
    conn = libvirt.open("test:///default")
    name = unique("dns")
    net = conn.networkDefineXML(lx.network_xml(name, cidr, "isolated", f"nbc-{name}"))
    try:
        gw = ipaddress.IPv4Network(cidr)
        ip = str(gw.network_address + 5)
        record = lx.dns_host_xml(ip, ("web-1", "www"))
        assert ET.fromstring(record).tag == "host"
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                   libvirt.VIR_NETWORK_SECTION_DNS_HOST, -1, record,
                   libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG)
        info = lx.parse_network(net.XMLDesc(0))
        assert info.dns_hosts == ((ip, ("web-1", "www")),)
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                   libvirt.VIR_NETWORK_SECTION_DNS_HOST, -1, record,
                   libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG)
        assert lx.parse_network(net.XMLDesc(0)).dns_hosts == ()
    finally:
        net.undefine()
        conn.close()


def test_hostile_dns_names_are_escaped_not_interpreted():
    record = lx.dns_host_xml("10.0.0.5", ("a</hostname><evil/>",))
    root = ET.fromstring(record)
    assert root.find(".//evil") is None
    assert root.findtext("hostname") == "a</hostname><evil/>"
    with pytest.raises(ValueError):
        lx.dns_host_xml("10.0.0.5", ("a\x00b",))


# --- create / delete on the test driver -------------------------------------------------

def test_create_records_and_logs_then_delete_removes(test_cloud, unique, cidr):
    name = unique("lab")
    net = test_cloud.networks.create(name, cidr, "routed")
    assert (net.mode, net.cidr, net.bridge) == ("routed", cidr, f"nbc-{name}")
    assert name in repr(net) and "<b>network</b>" in net._repr_html_()
    (res,) = test_cloud.inventory.resources(test_cloud.uri, "network")
    assert res.name == name and res.spec["cidr"] == cidr
    net.delete()
    assert name not in test_cloud.provider.network_names()
    assert test_cloud.inventory.resources(test_cloud.uri, "network") == []
    ops = [(o["verb"], o["result"]) for o in test_cloud.inventory.operations(10)]
    assert ops[:2] == [("delete", "ok"), ("create", "ok")]


def test_bad_input_is_one_line_and_changes_nothing(test_cloud, unique, cidr):
    name = unique("lab")
    test_cloud.networks.create(name, cidr, "isolated")
    try:
        before = _state(test_cloud)
        other = ipaddress.IPv4Network(cidr).supernet(8)
        cases = [
            (dict(name=unique("x"), cidr=str(other)), CloudError, f"overlaps network '{name}'"),
            (dict(name=unique("x"), cidr="192.168.122.0/25"), CloudError,
             "overlaps network 'default'"),
            (dict(name=unique("x"), cidr="10.1.2.3/24"), InvalidSpec, "not an IPv4 network"),
            (dict(name=unique("x"), cidr="banana"), InvalidSpec, "not an IPv4 network"),
            (dict(name=unique("x"), cidr="10.1.0.0/30"), InvalidSpec, "prefix"),
            (dict(name=unique("x"), cidr="10.1.0.0/24", mode="bridge"), InvalidSpec,
             "not a network mode"),
            (dict(name=name, cidr="10.1.0.0/24"), AlreadyExists, "exists already"),
            (dict(name="Lab!", cidr="10.1.0.0/24"), InvalidSpec, "not allowed"),
        ]
        for kw, exc, words in cases:
            with pytest.raises(exc, match=words) as err:
                test_cloud.networks.create(**kw)
            assert "\n" not in str(err.value)
        assert _state(test_cloud) == before
    finally:
        test_cloud.networks.delete(name)


def test_delete_refuses_in_use_default_and_foreign_networks(test_cloud, unique, cidr):
    name = unique("lab")
    test_cloud.networks.create(name, cidr, "isolated")
    dom = unique("vm")
    test_cloud.provider.define(lx.DomainDef(
        name=dom, vcpus=1, memory=64 << 20, domain_type="test",
        nics=(lx.Nic(name, "52:54:00:00:20:01"),),
        metadata={"kind": "instance", "networks": f"nbcloud,{name}"}))
    try:
        test_cloud.ensure_default_network()
        before = _state(test_cloud)
        with pytest.raises(CloudError, match=f"in use by instance {dom}"):
            test_cloud.networks.delete(name)
        with pytest.raises(CloudError, match="default network"):
            test_cloud.networks.delete("nbcloud")
        with pytest.raises(NotManaged, match="not made by nbcloud"):
            test_cloud.networks.delete("default")
        assert _state(test_cloud) == before
        assert test_cloud.networks.get(name).instances == [dom]
    finally:
        test_cloud.provider.conn.lookupByName(dom).undefine()
    test_cloud.networks.delete(name)


def test_network_commands(test_cloud, unique, cidr):
    name = unique("lab")
    run = lambda line: commands.run(test_cloud, commands.parse(line.split()))  # noqa: E731
    net = run(f"network create {name} --cidr {cidr} --mode isolated")
    assert net.mode == "isolated"
    table = run("network list")
    row = [r for r in table if r["network"] == name][0]
    assert (row["cidr"], row["nbcloud"], row["instances"]) == (cidr, "yes", "-")
    assert [r for r in table if r["network"] == "default"][0]["nbcloud"] == "no"
    leases = run(f"network leases {name}")
    assert leases.columns == ["mac", "ip", "hostname", "reserved", "lease expires"]
    assert str(run(f"network delete {name}")) == f"deleted network {name}"



@pytest.mark.parametrize("line,words", [
    ("network create lab", "--cidr"),
    ("network create lab --cidr 10.300.0.0/24", "not an IPv4 network"),
    ("network create lab --cidr 192.168.122.0/24", "overlaps network 'default'"),
    ("network create lab --cidr 10.5.0.0/24 --mode wifi", "not a network mode"),
    ("network delete nope", "does not exist"),
    ("network leases nope", "does not exist"),
])
def test_network_usage_errors_are_one_line(ip, line, words):
    with pytest.raises(UsageError, match=words) as err:
        ip.run_line_magic("cloud", line)
    assert "\n" not in str(err.value)


def test_a_second_reservation_of_one_name_says_whose_it_is(test_cloud, unique, cidr):
    """libvirt refuses a second DHCP host entry with a name already there, whatever its
    address; the error names the holder (a leftover looked like 'it kept being taken')."""
    import libvirt

    from nbcloud.core.errors import AlreadyExists
    name = unique("lab")
    net = test_cloud.networks.create(name, cidr, "nat")
    leftover = lx.dhcp_host_xml("52:54:00:00:00:01", net.gateway.rsplit(".", 1)[0] + ".9",
                                "web")
    test_cloud.provider.conn.networkLookupByName(name).update(
        libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, leftover, 0)
    with pytest.raises(AlreadyExists) as err:
        test_cloud.provider.reserve_address(name, "52:54:00:00:00:02", "web")
    message = str(err.value)
    assert "\n" not in message and ".9, MAC 52:54:00:00:00:01)" in message
    assert "virsh net-update" in message
    assert [h[0] for h in test_cloud.provider.network(name).hosts] == ["52:54:00:00:00:01"]
