"""Bad input on a real OpenStack is one line and leaves nothing behind: an unknown
flavor, a subnet overlapping another network, a quota exceeded, a libvirt-only verb."""
from __future__ import annotations

import pytest

from nbcloud.core.errors import CloudError, InvalidSpec, Unsupported
from tests.openstack.conftest import servers


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc) and len(str(exc)) < 400


def test_unknown_flavor(os_cloud, admin_conn):
    with pytest.raises(InvalidSpec, match="flavor 'x.huge' does not exist") as err:
        os_cloud.instances.create("os-bad-flavor", flavor="x.huge")
    _one_line(err.value)
    assert servers(admin_conn, "os-bad-flavor") == []


def test_overlapping_subnet(os_cloud, admin_conn):
    with pytest.raises(CloudError, match="overlaps network 'nbcloud'") as err:
        os_cloud.networks.create("os-bad-net", "10.77.0.128/25")
    _one_line(err.value)
    assert not list(admin_conn.network.networks(name="os-bad-net"))


def test_quota_exceeded(os_cloud, admin_conn):
    project = os_cloud.provider.project_id
    before = admin_conn.compute.get_quota_set(project).instances
    used = len([s for s in admin_conn.compute.servers(all_projects=True,
                                                       project_id=project)])
    admin_conn.compute.update_quota_set(project, instances=used)
    try:
        with pytest.raises(CloudError, match="[Qq]uota") as err:
            os_cloud.instances.create("os-bad-quota", flavor="m.nano")
        _one_line(err.value)
    finally:
        admin_conn.compute.update_quota_set(project, instances=before)
    assert servers(admin_conn, "os-bad-quota") == []
    assert not [r for r in os_cloud.ctx.inventory.all() if r.name == "os-bad-quota"]


def test_what_the_provider_lacks_is_one_line(os_cloud):
    with pytest.raises(Unsupported, match="openstack provider .* no storage pools") as err:
        os_cloud.pools.create("os-pool", "/tmp/os-pool")
    _one_line(err.value)
    with pytest.raises(Unsupported, match="no cdroms"):
        os_cloud.cdroms.create("os-cd", "/tmp")
    with pytest.raises(Unsupported, match="no load balancers"):
        os_cloud.lbs.create("os-lb", "nbcloud")
