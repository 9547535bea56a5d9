"""`adopt NAME --ssh` on the real daemon: a tiny guest stripped of nbcloud's mark and
inventory row (so it looks made with virsh, but still carries its seed: its host key and
our login key) is adopted with --ssh through the magic's API; the pinned key must be the
one nbcloud generated for it, `.ssh` must reach the guest, and a wrong pin is refused."""
from __future__ import annotations

import subprocess

import pytest

from nbcloud.core.errors import AlreadyExists, SSHError
from nbcloud.providers.libvirt.xml import NS
from nbcloud.services.ssh import fingerprint

NAME = "ad-vm"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzYZmzhAJBX71M71OnGmlrlsOkOBOPnJQMkWBVdOtph"


def _virsh(*args: str) -> str:
    done = subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"virsh {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


@pytest.fixture
def foreign(cloud):
    """A running tiny guest without nbcloud's mark or inventory row; its original host key."""
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    inst = cloud.instances.create(NAME, image="tiny", flavor="t.nano", network="nbcloud")
    hostkey = inst.meta["hostkey"]
    inst.close()
    _virsh("metadata", NAME, NS, "--remove", "--live", "--config")
    cloud.inventory.remove(cloud.uri, "instance", NAME)
    yield hostkey
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)   # adopted: marked again, so nbcloud deletes it


def test_adopt_ssh_pins_the_guest_key_and_refuses_a_changed_one(cloud, foreign):
    assert not cloud.provider.domain_facts(NAME)["marked"]
    done = cloud.adopt(NAME, ssh=True)
    meta = cloud.provider.metadata(NAME)
    # the key the guest was given (less nbcloud's comment), fetched over SSH
    assert meta["hostkey"].split() == foreign.split()[:2]
    assert f"pinned host key {fingerprint(foreign)} of {meta['ip']}" in done
    assert (meta["adopted"], meta["key"], meta["ssh_user"]) == ("1", "default", "root")
    inst = cloud.instances.get(NAME)
    assert inst.ssh("hostname").strip() == NAME
    inst.close()

    # adopted already: adopt again without --ssh is refused, with --ssh pins again
    with pytest.raises(AlreadyExists):
        cloud.adopt(NAME)
    assert fingerprint(foreign) in cloud.adopt(NAME, ssh=True)

    # a pin that is not the guest's key is refused, as for any instance
    cloud.provider.set_metadata(NAME, {**cloud.provider.metadata(NAME), "hostkey": OTHER_KEY})
    with pytest.raises(SSHError, match="host key"):
        inst.ssh("hostname")
