"""The OpenStack provider's pure parts, without a cloud: the URI, nbcloud's mark in server
metadata, flavors as nbcloud's, and that libvirt-only verbs refuse in one line. (The
provider against a real cloud is the openstack tier: tests/openstack.)"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from nbcloud.core.errors import HostError, InvalidSpec, Unsupported
from nbcloud.core.flavors import flavor_request
from nbcloud.providers.openstack.compute import NoAdoption, mark, unmark
from nbcloud.providers.openstack.flavors import flavor_of
from nbcloud.providers.openstack.provider import cloud_name


def test_uri_names_a_cloud_of_clouds_yaml():
    assert cloud_name("openstack://nbcloud-aio") == "nbcloud-aio"
    assert cloud_name("openstack:///lab.cloud") == "lab.cloud"
    for bad in ("openstack://", "openstack://a/b", "openstack://../etc", "qemu:///system",
                "openstack://x y", "openstack://" + "a" * 70):
        with pytest.raises(HostError, match="openstack://CLOUD"):
            cloud_name(bad)


def test_mark_round_trips_and_a_server_without_it_is_not_ours():
    meta = {"kind": "instance", "stack": "s", "hostkey": "ssh-ed25519 AAAA nbcloud"}
    items = mark(meta)
    assert all(k.startswith("nbcloud:") for k in items)
    assert unmark({**items, "owner": "someone"}) == meta
    assert unmark({"owner": "someone"}) is None and unmark({}) is None
    assert unmark({"nbcloud:stack": "s"}) is None          # no kind: not a mark


def test_nova_flavors_become_nbclouds():
    """The share is what the cloud enforces (Nova's CPU quota extra specs), the family
    nbcloud's word for the flavor's shape, whatever its name."""
    nano = flavor_of(SimpleNamespace(name="t.nano", vcpus=1, ram=128, ephemeral=0,
                                     extra_specs={"quota:cpu_quota": "25000",
                                                  "quota:cpu_period": "100000"}))
    assert (nano.vcpus, nano.memory, nano.cpu_share, nano.family) == (1, 128 << 20, 0.25,
                                                                      "shared")
    unenforced = flavor_of(SimpleNamespace(name="t.nano", vcpus=1, ram=128, ephemeral=0,
                                           extra_specs={}))
    assert (unenforced.cpu_share, unenforced.family) == (1.0, "highcpu")
    disk = flavor_of(SimpleNamespace(name="m1.small", vcpus=1, ram=2048, ephemeral=10,
                                     extra_specs=None))
    assert (disk.memory, disk.local_disk, disk.family) == (2 << 30, 10 << 30, "storage")
    assert flavor_of(SimpleNamespace(name="m1.tiny", vcpus=1, ram=512, ephemeral=0,
                                     extra_specs={})).family == "standard"
    assert flavor_of(SimpleNamespace(name="big", vcpus=2, ram=8192, ephemeral=0,
                                     extra_specs={})).family == "highmem"


def test_a_new_flavor_is_checked_before_any_cloud_sees_it():
    f = flavor_request("lab.small", "2", "1G", share="0.5", ephemeral="2G")
    assert (f.vcpus, f.memory, f.cpu_share, f.local_disk) == (2, 1 << 30, 0.5, 2 << 30)
    for bad in ("Lab", "1x", "a/b", "x" * 64, "", None):
        with pytest.raises(InvalidSpec, match="flavor name"):
            flavor_request(bad, 1, "1G")
    for share in ("0", "1.5", "-1", "x", "nan"):
        with pytest.raises(InvalidSpec, match="share"):
            flavor_request("ok", 1, "1G", share=share)
    with pytest.raises(InvalidSpec, match="vcpus"):
        flavor_request("ok", "0", "1G")


def test_adoption_is_refused_in_one_line():
    p = NoAdoption()
    p.uri = "openstack://lab"
    with pytest.raises(Unsupported, match="does not adopt"):
        p.domain_facts("web")


def test_the_user_network_is_refused():
    from nbcloud.providers.openstack.compute import ComputeMixin
    with pytest.raises(InvalidSpec, match="libvirt"):
        ComputeMixin().check_instance_networks(("user",))


def test_warm_clones_are_refused_in_one_line():
    from nbcloud.providers.base import Provider
    from nbcloud.providers.openstack.compute import NoClones

    class P(NoClones, Provider):
        name, uri = "openstack", "openstack://lab"
    check = P().clone_check(None, None, ("net",))
    assert (check.ok, check.base_missing) == (False, False)
    assert check.why == "the openstack provider (openstack://lab) boots every server cold"
    with pytest.raises(Unsupported, match="has no warm clones"):
        P().warm_base(None, None, "net")


def test_a_students_quotas_are_checked_before_any_cloud_sees_them():
    from nbcloud.services.projects import DEFAULT_QUOTAS, check_quotas
    got = check_quotas({"instances": 3, "ram": "2G"})
    assert got == {**DEFAULT_QUOTAS, "instances": 3, "ram": 2048}
    assert check_quotas(None)["ram"] == 1024
    for bad in ({"instances": -1}, {"cores": "2"}, {"cores": True}, {"swap": 1},
                {"ram": "lots"}, {"volumes": 10**6}):
        with pytest.raises(InvalidSpec):
            check_quotas(bad)
