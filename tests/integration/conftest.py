"""Integration tier: a real libvirt daemon (qemu:///system) and real TCG guests.

`make test` brings the daemon up inside the test network namespace and runs pytest there,
because guest addresses are reachable only inside it.
"""
from __future__ import annotations

import os

import pytest

URI = os.environ.get("NBCLOUD_TEST_URI", "qemu:///system")


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    """A Cloud on the real daemon, with an inventory of its own."""
    from nbcloud.api import Cloud
    from nbcloud.core.errors import CloudError
    from nbcloud.inventory import Inventory
    from nbcloud.providers.libvirt.networks import DEFAULT_NETWORK
    os.environ["NBCLOUD_HOME"] = str(tmp_path_factory.getbasetemp() / "nbcloud-home")
    try:
        c = Cloud(URI, inventory=Inventory(tmp_path_factory.mktemp("inv") / "inv.sqlite"))
    except CloudError as exc:
        pytest.fail(f"{exc} — run the integration tier with `make test`", pytrace=False)
    bridge = c.provider.network(DEFAULT_NETWORK).bridge
    if not os.path.exists(f"/sys/class/net/{bridge}"):
        pytest.fail(f"bridge {bridge} is not in this network namespace: run the tests "
                    "inside the daemon's namespace (`make test` does)", pytrace=False)
    yield c
    c.close()


USER_DATA = """#!/bin/sh
echo "made by user-data on $(hostname)" > /root/user-data-ran
"""


@pytest.fixture(scope="module")
def running_instance(cloud):
    """A tiny t.nano instance on the nbcloud network, SSH-ready, with shell user-data."""
    name = "it-web"
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    inst = cloud.instances.create(name, image="tiny", flavor="t.nano", network="nbcloud",
                                  user_data=USER_DATA)
    yield inst
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
