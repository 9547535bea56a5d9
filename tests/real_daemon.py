"""The Cloud the integration and reliability tiers share: the real daemon in the test
network namespace (`make test` brings it up there), an inventory of the tier's own."""
from __future__ import annotations

import os

import pytest

URI = os.environ.get("NBCLOUD_TEST_URI", "qemu:///system")


def open_cloud(tmp_path_factory, tier: str):
    """A Cloud on the real daemon; the test fails in one line where there is none, or
    where this process is not in the daemon's network namespace."""
    from nbcloud.api import Cloud
    from nbcloud.core.errors import CloudError
    from nbcloud.inventory import Inventory
    from nbcloud.providers.libvirt.networks import DEFAULT_NETWORK
    try:
        cloud = Cloud(URI, inventory=Inventory(tmp_path_factory.mktemp(f"{tier}-inv")
                                               / "inv.sqlite"))
    except CloudError as exc:
        pytest.fail(f"{exc} — run the {tier} tier with `make test`", pytrace=False)
    bridge = cloud.provider.network(DEFAULT_NETWORK).bridge
    if not os.path.exists(f"/sys/class/net/{bridge}"):
        pytest.fail(f"bridge {bridge} is not in this network namespace: run the tests "
                    "inside the daemon's namespace (`make test` does)", pytrace=False)
    return cloud
