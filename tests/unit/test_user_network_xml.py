"""User-mode networking (the session tier's network): domain XML and refusals."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from nbcloud.core.errors import CloudError
from nbcloud.core.spec import InvalidSpec
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.compute import default_network
from nbcloud.providers.types import USER_NETWORK


def test_user_nic_is_a_netdev_with_ssh_forwarded_from_loopback():
    d = lx.DomainDef(name="u1", vcpus=1, memory=128 << 20,
                     nics=(lx.Nic(USER_NETWORK, "52:54:00:12:34:56", host_port=40022),))
    root = ET.fromstring(lx.domain_xml(d))
    assert root.find("devices/interface") is None   # no bridge, no libvirt network
    args = [a.get("value") for a in root.iter(f"{{{lx.QEMU_NS}}}arg")]
    assert args[0] == "-netdev"
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in args[1]
    assert "mac=52:54:00:12:34:56" in args[3] and "netdev=nbcuser0" in args[3]


def test_default_network_follows_the_daemon():
    assert default_network("qemu:///system") == "nbcloud"
    assert default_network("qemu:///session") == USER_NETWORK
    assert default_network("test:///default") == "nbcloud"


def test_user_cannot_be_combined_or_created(test_cloud):
    cloud = test_cloud
    with pytest.raises(InvalidSpec, match="user"):
        cloud.instances.create("u2", network=["user", "nbcloud"])
    with pytest.raises((InvalidSpec, CloudError), match="reserved"):
        cloud.networks.create("user", "10.99.0.0/24")
    assert "u2" not in cloud.provider.managed()
