"""The openstack tier: nbcloud's OpenStack provider against a real cloud.

`make test` brings the all-in-one cloud up (scripts/openstack/aio.sh up) and runs this tier
inside its network namespace (`aio.sh exec`), where its APIs and floating IPs are
reachable. A cloud that is not there fails the tier: it is never skipped in CI.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

CLOUD = os.environ.get("NBCLOUD_OS_CLOUD", "nbcloud-aio")
ADMIN = os.environ.get("NBCLOUD_OS_ADMIN", "nbcloud-aio-admin")


@pytest.fixture(scope="session")
def os_cloud(tmp_path_factory):
    """A Cloud on the OpenStack cloud, with an inventory of its own; the tiny image in
    Glance (uploaded once, as nbcloud's own build)."""
    from nbcloud.api import Cloud
    from nbcloud.core.errors import CloudError
    from nbcloud.inventory import Inventory
    try:
        cloud = Cloud.openstack(CLOUD, inventory=Inventory(
            tmp_path_factory.mktemp("os-inv") / "inv.sqlite"), ssh_timeout=600)
    except CloudError as exc:
        pytest.fail(f"{exc} — run the openstack tier with `make test` (it brings the "
                    "all-in-one cloud up and runs the tier in its namespace)", pytrace=False)
    cloud.build_tiny()
    yield cloud
    cloud.close()


@pytest.fixture(scope="session")
def admin_conn():
    """An admin's openstacksdk connection: the witness (what the cloud itself says) and
    the hand that changes things behind nbcloud's back."""
    import openstack
    conn = openstack.connect(cloud=ADMIN)
    yield conn
    conn.close()


def servers(conn, name: str) -> list:
    """Servers of that exact name, in any project (an admin's listing)."""
    return [s for s in conn.compute.servers(details=True, all_projects=True, name=f"^{name}$")
            if s.name == name]


@contextmanager
def fresh_instance(cloud, name: str, **kwargs):
    """Instance `name` made afresh (a leftover of an interrupted run deleted first), and
    deleted afterwards if the test left it."""
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    inst = cloud.instances.create(name, **kwargs)
    try:
        yield inst
    finally:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
