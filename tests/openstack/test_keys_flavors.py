"""Key pairs and flavors on a real OpenStack: Nova holds only the public half of the user's
keys (and hands it to the server's metadata); flavors are listed in nbcloud's family words
with the CPU share the cloud enforces (the compute host's CFS quota is the witness), and
an admin makes and deletes them, a member is refused in one line."""
from __future__ import annotations

import subprocess

import pytest

from nbcloud.core.errors import CloudError
from nbcloud.services import keys
from tests.openstack.conftest import ADMIN, servers

KEY, SERVER, FLAVOR = "ok-key", "ok-keyed", "ok.half"


def _user_id(admin_conn) -> str:
    return admin_conn.identity.find_user("nbcloud").id


def test_a_key_pair_is_the_public_half_only(os_cloud, admin_conn):
    if KEY in {k.name for k in os_cloud.keys.list()}:
        os_cloud.keys.delete(KEY)
    made = os_cloud.keys.create(KEY)
    try:
        nova = admin_conn.compute.get_keypair(KEY, user_id=_user_id(admin_conn))
        assert nova.public_key.split()[:2] == made.public.split()[:2]
        assert not nova.private_key   # Nova never made it: nothing secret passed through
        assert made.private_path.exists()
        assert "PRIVATE" not in repr(made) + str(made)
    finally:
        os_cloud.keys.delete(KEY)
    assert not [k for k in admin_conn.compute.keypairs(user_id=_user_id(admin_conn))
                if k.name == KEY]
    # an imported key: the public line alone, on this side and in Nova
    line = keys.generate("elsewhere")[1]
    imported = os_cloud.keys.import_(KEY, line)
    try:
        assert not imported.has_private
        nova = admin_conn.compute.get_keypair(KEY, user_id=_user_id(admin_conn))
        assert nova.public_key.split()[:2] == line.split()[:2]
    finally:
        os_cloud.keys.delete(KEY)


def test_a_server_is_booted_with_its_key_pair(os_cloud, admin_conn):
    if os_cloud.provider.exists(SERVER):
        os_cloud.instances.delete(SERVER)
    if KEY in {k.name for k in os_cloud.keys.list()}:
        os_cloud.keys.delete(KEY)
    key = os_cloud.keys.create(KEY)
    inst = os_cloud.instances.create(SERVER, flavor="t.nano", key=KEY)
    try:
        (nova,) = servers(admin_conn, SERVER)
        assert nova.key_name == KEY
        assert key.public.split()[1] in inst.ssh("cat /root/.ssh/authorized_keys")
        with pytest.raises(CloudError, match="login key of instance ok-keyed"):
            os_cloud.keys.delete(KEY)
        # t.nano's share is the compute host's CFS quota: 25 ms of each 100 ms per vCPU
        xml = subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml",
                              nova.instance_name], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        assert "<quota>25000</quota>" in xml and "<period>100000</period>" in xml
    finally:
        inst.delete()
        os_cloud.keys.delete(KEY)


def test_flavors_in_nbclouds_words(os_cloud):
    flavors = {f.name: f for f in os_cloud.flavors()}
    assert (flavors["t.nano"].family, flavors["t.nano"].cpu_share) == ("shared", 0.25)
    assert (flavors["m.small"].family, flavors["m.small"].cpu_share) == ("standard", 1.0)
    assert flavors["d.nano"].family == "storage" and flavors["d.nano"].local_disk == 1 << 30
    assert flavors["m1.tiny"].family == "standard"


def test_a_member_may_not_make_flavors(os_cloud, admin_conn):
    with pytest.raises(CloudError, match="needs the admin role") as err:
        os_cloud.create_flavor(FLAVOR, 1, "192M")
    assert "\n" not in str(err.value)
    assert admin_conn.compute.find_flavor(FLAVOR) is None


def test_an_admin_makes_and_deletes_a_flavor(tmp_path, admin_conn):
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    admin = Cloud.openstack(ADMIN, inventory=Inventory(tmp_path / "inv.sqlite"))
    try:
        if admin_conn.compute.find_flavor(FLAVOR) is not None:
            admin.delete_flavor(FLAVOR)
        made = admin.create_flavor(FLAVOR, 1, "192M", disk="1G", share=0.5)
        assert (made.cpu_share, made.family) == (0.5, "shared")
        nova = admin_conn.compute.find_flavor(FLAVOR, get_extra_specs=True)
        assert (nova.vcpus, nova.ram, nova.disk) == (1, 192, 1)
        assert nova.extra_specs == {"quota:cpu_period": "100000", "quota:cpu_quota": "50000"}
        admin.delete_flavor(FLAVOR)
        assert admin_conn.compute.find_flavor(FLAVOR) is None
        ops = [(o["verb"], o["kind"], o["name"], o["result"])
               for o in admin.inventory.operations(10)]
        assert ("create", "flavor", FLAVOR, "ok") in ops and \
            ("delete", "flavor", FLAVOR, "ok") in ops
    finally:
        admin.close()
