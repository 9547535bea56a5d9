"""Networks, DNS, multi-NIC instances and key pairs on the real daemon, asserted on what
the guests themselves see (names resolve, neighbours answer, both NICs have addresses)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import (
    AlreadyExists,
    CloudError,
    InvalidSpec,
    NotManaged,
    SSHError,
)
from nbcloud.services import keys, ssh

NET, CIDR = "nw-lab", "10.78.0.0/24"
GUESTS = ("nw-a", "nw-b", "nw-two")




def _clean(cloud) -> None:
    for name in GUESTS:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
    for name in (NET, "nw-over"):
        if name in cloud.provider.network_names():
            cloud.networks.delete(name)


def _snapshot(cloud) -> tuple:
    """What a refused command must leave alone: libvirt networks and the inventory."""
    return (cloud.provider.network_names(), len(cloud.inventory.operations(10_000)),
            cloud.inventory.resources(cloud.uri))


@pytest.fixture(scope="module")
def lab_network(cloud):
    """The isolated network nw-lab (10.78.0.0/24), deleted at the end."""
    _clean(cloud)
    net = cloud.networks.create(NET, CIDR, mode="isolated")
    yield net
    _clean(cloud)


@pytest.fixture(scope="module")
def lab_key(cloud):
    """A key pair made by `key create` (NBCLOUD_HOME is the session's own folder)."""
    if "nw-key" in [k.name for k in cloud.keys.list()]:
        cloud.keys.delete("nw-key")
    return cloud.keys.create("nw-key")


@pytest.fixture(scope="module")
def neighbours(cloud, lab_network, lab_key):
    """nw-a and nw-b on nw-lab (logging in with nw-key), and nw-two on nbcloud + nw-lab."""
    specs = [("nw-a", [NET]), ("nw-b", [NET]), ("nw-two", ["nbcloud", NET])]
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(cloud.instances.create, name, network=nets, key="nw-key")
                   for name, nets in specs]
        a, b, two = [f.result() for f in futures]
    yield a, b, two
    for inst in (a, b, two):
        inst.close()


def test_network_has_its_mode_bridge_and_record(cloud, lab_network):
    info = lab_network.info
    assert (info.mode, str(info.network), info.gateway) == ("isolated", CIDR, "10.78.0.1")
    assert info.bridge == "nbc-nw-lab" and len(info.bridge) <= 15
    assert (info.dhcp_start, info.dhcp_end) == ("10.78.0.128", "10.78.0.254")
    assert lab_network.active
    (res,) = [r for r in cloud.inventory.resources(cloud.uri, "network") if r.name == NET]
    assert res.spec == {"cidr": CIDR, "mode": "isolated", "bridge": "nbc-nw-lab"}
    op = [o for o in cloud.inventory.operations(200) if o["kind"] == "network"
          and o["name"] == NET][0]
    assert (op["verb"], op["result"]) == ("create", "ok")
    row = [r for r in cloud.networks.table() if r["network"] == NET][0]
    assert row["nbcloud"] == "yes" and row["mode"] == "isolated"


def test_neighbour_resolves_and_pings_by_name(cloud, neighbours):
    a, b, _ = neighbours
    assert a.ip.startswith("10.78.0.") and b.ip.startswith("10.78.0.")
    assert "nameserver 10.78.0.1" in b.ssh("cat /etc/resolv.conf")
    for name in ("nw-a", f"nw-a.{NET}"):
        out = wait_for(lambda: b.ssh(f"nslookup -type=a {name}", check=False), 20,
                       f"{name} to resolve from nw-b")
        assert f"Address: {a.ip}" in out, out
    ping = b.ssh_result("ping -c1 -W2 nw-a", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert f"({a.ip})" in ping.stdout or a.ip in ping.stdout
    assert "1 packets received" in ping.stdout
    # and the other way round
    assert f"Address: {b.ip}" in a.ssh("nslookup -type=a nw-b")


def test_leases_show_reservations_and_dhcp_leases(cloud, neighbours):
    a, b, _ = neighbours
    ours = {a.meta["mac"]: a.ip, b.meta["mac"]: b.ip}

    def leased():
        rows = {r["mac"]: r for r in cloud.networks.leases(NET)}
        return rows if all(rows.get(m, {}).get("lease expires", "-") != "-"
                           for m in ours) else None
    rows = wait_for(leased, 30, "DHCP leases of nw-a and nw-b")
    for mac, ip in ours.items():
        assert rows[mac]["ip"] == ip and rows[mac]["reserved"] == "yes"
    assert {rows[m]["hostname"] for m in ours} == {"nw-a", "nw-b"}
    dns = dict(cloud.provider.network(NET).dns_hosts)
    assert dns[a.ip] == ("nw-a",) and dns[b.ip] == ("nw-b",)


def test_reservations_reach_dnsmasq_as_files_not_as_live_libvirt_updates(cloud, neighbours):
    """A live `ip-dhcp-host` update makes libvirt reload the network's whole firewall
    (0.35-0.45 s each, the network locked); nbcloud's networks take the live half of a
    reservation as a file their dnsmasq reads (dhcp_files.py). The leases test above is
    the proof that dnsmasq gave each guest its reserved address from it."""
    import libvirt

    from nbcloud.providers.libvirt import dhcp_files
    from nbcloud.providers.libvirt import xml as lx
    provider = cloud.provider
    where = dhcp_files.folder(provider.paths, cloud.uri, NET)
    net = provider.conn.networkLookupByName(NET)
    assert lx.network_hostsdir(net.XMLDesc(0)) == str(where)
    live = {h[0] for h in lx.parse_network(net.XMLDesc(0)).hosts}
    config = set(lx.parse_network(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)).hosts)
    for inst in neighbours[:2]:
        mac = inst.meta["mac"]
        assert mac not in live
        assert (mac, inst.ip, inst.name) in config              # the definition holds it
        assert (mac, inst.ip, inst.name) in provider.network(NET).hosts
        line = (where / mac.replace(":", "-")).read_text()
        assert line == f"{mac},{inst.ip},{inst.name},10m\n"
    # a reservation without a guest: published as a file, released with it
    r = provider.reserve_address(NET, "52:54:00:7e:57:01", "nw-held")
    provider.publish(r)
    r.dhcp.result(10)
    assert dhcp_files.has(where, r.mac)
    assert provider.release_address(NET, r.mac)
    assert not dhcp_files.has(where, r.mac)
    assert "nw-held" not in {h[2] for h in provider.network(NET).hosts}


def test_two_nic_instance_has_both_addresses_inside(cloud, neighbours):
    a, _, two = neighbours
    meta = two.meta
    ips = dict(item.split("=") for item in meta["ips"].split(","))
    assert set(ips) == {"nbcloud", NET} and meta["ip"] == ips["nbcloud"]
    assert ips["nbcloud"].startswith("10.77.0.") and ips[NET].startswith("10.78.0.")
    addrs = two.ssh("ip -4 -o addr")
    lines = {line.split()[1]: line for line in addrs.splitlines() if " inet " in line}
    assert f"inet {ips['nbcloud']}/24" in lines["eth0"]
    assert f"inet {ips[NET]}/24" in lines["eth1"]
    # name servers of both networks, the first NIC's first
    assert two.ssh("cat /etc/resolv.conf").split() == ["nameserver", "10.77.0.1",
                                                       "nameserver", "10.78.0.1"]
    routes = [r for r in two.ssh("ip route").splitlines() if r.startswith("default")]
    assert len(routes) == 1 and "via 10.77.0.1 dev eth0" in routes[0]  # first NIC only
    # the second NIC really is on nw-lab: its neighbour answers there
    assert two.ssh_result(f"ping -c1 -W2 {a.ip}", check=False).returncode == 0
    assert "nw-two" in {r["hostname"] for r in cloud.networks.leases(NET)}


def test_bad_network_input_changes_nothing(cloud, lab_network):
    before = _snapshot(cloud)
    cases = [
        (lambda: cloud.networks.create("nw-over", "10.78.0.128/25"), CloudError,
         "overlaps network 'nw-lab'"),
        (lambda: cloud.networks.create("nw-over", "10.77.0.0/16"), CloudError,
         "overlaps network 'nbcloud'"),
        (lambda: cloud.networks.create("nw-over", "10.300.0.0/24"), InvalidSpec,
         "not an IPv4 network"),
        (lambda: cloud.networks.create("nw-over", "10.79.0.1/24"), InvalidSpec,
         "not an IPv4 network"),
        (lambda: cloud.networks.create("nw-over", "10.79.0.0/24", mode="bridge"),
         InvalidSpec, "not a network mode"),
        (lambda: cloud.networks.create(NET, "10.79.0.0/24"), AlreadyExists, "exists"),
        (lambda: cloud.networks.create("Bad_Name", "10.79.0.0/24"), InvalidSpec,
         "not allowed"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc, match=text) as info:
            call()
        assert "\n" not in str(info.value)
    assert _snapshot(cloud) == before


def test_deleting_a_network_in_use_or_not_ours_is_refused(cloud, neighbours):
    before = _snapshot(cloud)
    with pytest.raises(CloudError, match="in use by instances nw-a, nw-b, nw-two"):
        cloud.networks.delete(NET)
    with pytest.raises(CloudError, match="default network"):
        cloud.networks.delete("nbcloud")
    if "default" in cloud.provider.network_names():
        with pytest.raises(NotManaged):
            cloud.networks.delete("default")
    assert _snapshot(cloud) == before
    assert cloud.provider.network_active(NET)


def test_instance_logs_in_with_its_key_only(cloud, neighbours, lab_key):
    a, _, _ = neighbours
    assert a.meta["key"] == "nw-key"
    assert a.ssh("cat /root/.ssh/authorized_keys").strip() == lab_key.public
    assert a.ssh("hostname").strip() == "nw-a"
    with pytest.raises(SSHError):       # the default key is not authorized there
        ssh.connect(a.ip, host_key=a.meta["hostkey"],
                    key_path=keys.user_key("default").private_path)
    with pytest.raises(CloudError, match="is the login key of instances"):
        cloud.keys.delete("nw-key")


def test_imported_key_without_private_half_cannot_be_used_by_nbcloud(cloud):
    _, public = keys.generate("someone@laptop")
    if "nw-imp" in [k.name for k in cloud.keys.list()]:
        cloud.keys.delete("nw-imp")
    imported = cloud.keys.import_("nw-imp", public)
    assert not imported.has_private and imported.fingerprint.startswith("SHA256:")
    with pytest.raises(SSHError, match="imported without its private key"):
        keys.login_key("nw-imp")
    cloud.keys.delete("nw-imp")


def test_delete_removes_dns_records_then_the_network(cloud, lab_network, neighbours):
    a, b, two = neighbours
    b_ip = b.ip
    for inst in (b, two):
        inst.delete()
    info = cloud.provider.network(NET)
    assert all(ip != b_ip for ip, _ in info.dns_hosts)
    assert [h[2] for h in info.hosts] == ["nw-a"]
    # (dnsmasq still knows nw-b from its DHCP lease until that expires: libvirt offers
    # no call to end a lease, so the DNS record is what nbcloud removes.)
    a.delete()
    cloud.networks.delete(NET)
    assert NET not in cloud.provider.network_names()
    assert all(r.name != NET for r in cloud.inventory.resources(cloud.uri, "network"))
