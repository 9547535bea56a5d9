"""The OpenStack provider's pure parts, without a cloud: the URI, nbcloud's mark in server
metadata, flavors as nbcloud's, and that libvirt-only verbs refuse in one line. (The
provider against a real cloud is the openstack tier: tests/openstack.)"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from nbcloud.core.errors import HostError, InvalidSpec, Unsupported
from nbcloud.providers.openstack.compute import NoAdoption, flavor_of, mark, unmark
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
    nano = flavor_of(SimpleNamespace(name="t.nano", vcpus=1, ram=128, ephemeral=0))
    assert (nano.vcpus, nano.memory, nano.cpu_share, nano.family) == (1, 128 << 20, 0.25,
                                                                      "shared")
    other = flavor_of(SimpleNamespace(name="m1.small", vcpus=1, ram=2048, ephemeral=10))
    assert (other.memory, other.local_disk, other.family) == (2 << 30, 10 << 30, "openstack")


def test_adoption_is_refused_in_one_line():
    p = NoAdoption()
    p.uri = "openstack://lab"
    with pytest.raises(Unsupported, match="does not adopt"):
        p.domain_facts("web")


def test_the_user_network_is_refused():
    from nbcloud.providers.openstack.compute import ComputeMixin
    with pytest.raises(InvalidSpec, match="libvirt"):
        ComputeMixin().check_instance_networks(("user",))
