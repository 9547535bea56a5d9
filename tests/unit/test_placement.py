"""Placement (core/placement.py) and the hosts service on test:/// hosts: the host with
most room wins, a group is spread, ratios overcommit, a pin is obeyed, a full cloud is
refused in one line; a cloud of one host places nothing and shows nothing new."""
from __future__ import annotations

import pytest

from nbcloud.core.errors import CloudError, NoCapacity, NotFound
from nbcloud.core.placement import HostLoad, place

GIB = 1 << 30
NODE = """<node><cpu><mhz>2000</mhz><model>x86_64</model><active>{n}</active>
<total>{n}</total><nodes>1</nodes><sockets>1</sockets><cores>{n}</cores><threads>1</threads>
</cpu><memory>{kib}</memory></node>"""


def test_the_host_with_most_free_memory_wins():
    hosts = [HostLoad("a", 4, 4 * GIB, used_memory=3 * GIB), HostLoad("b", 4, 4 * GIB)]
    assert place("x", 1, GIB // 8, hosts) == "b"


def test_a_group_is_spread_before_memory_counts():
    hosts = [HostLoad("a", 4, 8 * GIB, members=1), HostLoad("b", 4, 2 * GIB)]
    assert place("x", 1, GIB // 8, hosts) == "b"


def test_ratios_overcommit_vcpus_and_memory():
    host = HostLoad("a", 2, GIB, used_vcpus=8, used_memory=GIB, cpu_ratio=4.5, ram_ratio=1.5)
    assert (host.cap_vcpus, host.free_vcpus, host.free_memory) == (9, 1, GIB // 2)
    assert place("x", 1, GIB // 2, [host]) == "a"


def test_a_pin_is_obeyed_or_refused():
    hosts = [HostLoad("a", 4, 4 * GIB), HostLoad("b", 4, GIB)]
    assert place("x", 1, GIB // 8, hosts, pin="b") == "b"
    with pytest.raises(NotFound, match=r"^host 'c' is not a host of this cloud \(hosts: a, b"):
        place("x", 1, GIB // 8, hosts, pin="c")
    with pytest.raises(NoCapacity, match="^host b has no room for x "):
        place("x", 1, 2 * GIB, hosts, pin="b")


def test_a_full_cloud_says_what_is_short_in_one_line():
    hosts = [HostLoad("a", 1, GIB, used_vcpus=4), HostLoad("b", 4, GIB, used_memory=GIB),
             HostLoad("c", 4, GIB, up=False), HostLoad("d", 4, GIB, enabled=False)]
    with pytest.raises(NoCapacity) as refused:
        place("web", 1, 128 << 20, hosts)
    assert str(refused.value) == (
        "no host has room for web (1 vCPU, 128 MiB): a has 0 of 4 vCPUs free; "
        "b has 0 MiB of 1 GiB memory free; c is down; d is drained; start or add a host "
        "(`%cloud host add NAME URI`), delete an instance, or raise a host's allocation "
        "ratio (`--cpu-ratio`, `--ram-ratio`)")


@pytest.fixture
def hosts_cloud(test_cloud, tmp_path):
    """test:///default as the home host and three test:/// hosts of 4 cores, 4 GiB."""
    uris = []
    for i in (1, 2, 3):
        node = tmp_path / f"h{i}.xml"
        node.write_text(NODE.format(n=4, kib=4 << 20))
        uris.append(f"test://{node}")
    test_cloud.hosts.add("home", "test:///default", cpu_ratio=0.05)   # takes nothing
    for i, uri in enumerate(uris, 1):
        test_cloud.hosts.add(f"h{i}", uri, cpu_ratio=2)
    return test_cloud


def test_placement_claims_spread_a_group_and_refuse_a_full_cloud(hosts_cloud):
    hosts = hosts_cloud.hosts
    nano = hosts_cloud.provider.flavor("t.nano")
    where = [hosts.place(f"w-{i}", nano, "w") for i in range(24)]   # 8 vCPUs per host
    assert sorted(where.count(h) for h in ("h1", "h2", "h3")) == [8, 8, 8]
    records = {r.name: r for r in hosts_cloud.ctx.inventory.all("instance")}
    assert records["w-0"].state == "placing" and records["w-0"].spec["host"] == where[0]
    with pytest.raises(NoCapacity) as refused:
        hosts.place("w-24", nano, "w")
    message = str(refused.value)
    assert message.startswith("no host has room for w-24 (1 vCPU, 128 MiB): home has 0 of 0 "
                              "vCPUs free") and "\n" not in message
    for h in ("h1", "h2", "h3"):
        assert f"; {h} has 0 of 8 vCPUs free; " in message
    assert hosts_cloud.ctx.inventory.get("instance", "w-24") is None
    rows = {r[0]: r for r in hosts.table().rows}
    assert rows["h1"][1:4] == [hosts_cloud.hosts.provider.host_uri("h1"), "up", "0/8 (4 x 2)"]
    with pytest.raises(CloudError, match="^host h1 holds instances w-"):
        hosts.remove("h1")


def test_one_host_places_nothing_and_lists_as_ever(test_cloud):
    nano = test_cloud.provider.flavor("t.nano")
    assert test_cloud.hosts.place("solo", nano) is None
    assert test_cloud.ctx.inventory.get("instance", "solo") is None
    assert test_cloud.instances.table().columns == ["name", "state", "ip", "flavor", "image"]
    with pytest.raises(NotFound, match="it has one, home"):
        test_cloud.hosts.place("solo", nano, pin="elsewhere")


def test_a_host_without_a_shell_is_refused_a_spanning_network_and_ssh_words_are_checked():
    from nbcloud.core.errors import Unsupported
    from nbcloud.providers.libvirt.overlay import HostShell
    with pytest.raises(Unsupported, match=r"^host h2 \(qemu\+tcp://10.0.0.2/system\) offers "
                                          "nbcloud no shell: "):
        HostShell("h2", "qemu+tcp://10.0.0.2/system", False).require()
    for uri in ("qemu+ssh://-oProxyCommand=touch@h/system", "qemu+ssh://root@-h/system"):
        with pytest.raises(CloudError, match="names a user or host nbcloud will not pass"):
            HostShell("h2", uri, False)


@pytest.mark.parametrize("uri", [
    "http://10.0.0.2/", "qemu+ext:///system?command=/bin/sh", "qemu+ssh://h/system?netcat=sh",
    "qemu+ssh://h:port/system", "qemu:///system\n", "qemu:///sys tem", "x" * 600, 42,
    "qemu+ssh://h/system#frag"])
def test_a_host_uri_that_is_not_a_libvirt_transport_is_refused_in_one_line(test_cloud, uri):
    from nbcloud.core.errors import InvalidSpec
    with pytest.raises(InvalidSpec) as refused:
        test_cloud.hosts.add("h9", uri)
    message = str(refused.value)
    assert "is not a libvirt URI nbcloud takes" in message and message.isprintable()
    assert test_cloud.hosts.records() == []
    assert test_cloud.ctx.inventory.operations(1) == [] or \
        test_cloud.ctx.inventory.operations(1)[0]["verb"] != "add"


def test_a_cloud_of_several_hosts_makes_no_warm_clone(hosts_cloud):
    provider = hosts_cloud.provider
    image = provider.images.get("tiny") if provider.images.exists("tiny") else None
    why = provider._clone_obstacle(image, provider.flavor("t.nano"), ("nbcloud",), False, ())
    assert why.startswith("a cloud of several hosts boots cold")
