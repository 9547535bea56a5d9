"""The slow tier: a Debian bookworm image with the real cloud-init, built from Debian
packages and booted once per run under TCG (minutes), checked from inside the guest.

Run inside the daemon's network namespace, like the integration tier, after building
the image outside it (the Debian mirror is reachable only from the machine's namespace):
    .venv/bin/nbcloud image build debian
    ip netns exec nbcloud-test .venv/bin/python -m pytest tests/slow -q
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

URI = os.environ.get("NBCLOUD_TEST_URI", "qemu:///system")
# The image `scripts/test.sh` builds (outside the namespace: the mirror is not reachable
# inside); building it again here is a cache hit that costs a second.
IMAGE, NAME = "debian", "im-deb"
BOOT_TIMEOUT = 420.0

USER_DATA = """#cloud-config
runcmd:
  - [sh, -c, 'echo "runcmd ran on $(hostname)" > /root/runcmd-ran']
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    from nbcloud.api import Cloud
    from nbcloud.core.errors import CloudError
    from nbcloud.inventory import Inventory
    try:
        c = Cloud(URI, inventory=Inventory(tmp_path_factory.mktemp("inv") / "inv.sqlite"),
                  ssh_timeout=BOOT_TIMEOUT)
    except CloudError as exc:
        pytest.fail(f"{exc} — run the slow tier inside the daemon's namespace",
                    pytrace=False)
    yield c
    c.close()


@pytest.fixture(scope="module")
def debian_image(cloud):
    """The Debian cloud-init image, built (or taken from the cache) once per run."""
    start = time.monotonic()
    image = cloud.build_debian(IMAGE, progress=print)
    print(f"debian image ready in {time.monotonic() - start:.1f} s")
    return image


@pytest.fixture(scope="module")
def debian_instance(cloud, debian_image):
    """One instance booted from the Debian image with real cloud-init, SSH-ready."""
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    start = time.monotonic()
    try:
        inst = cloud.instances.create(NAME, image=IMAGE, flavor="m.small",
                                      user_data=USER_DATA)
    except Exception:
        if cloud.provider.exists(NAME):
            print(cloud.instances.get(NAME).console()[-6000:])
        raise
    inst.boot_to_ssh = time.monotonic() - start
    print(f"boot to SSH: {inst.boot_to_ssh:.1f} s")
    yield inst
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)


def test_the_image_is_a_disk_with_its_own_kernel(debian_image):
    assert debian_image.kind == "disk" and debian_image.boot == "kernel"
    assert debian_image.disk_format == "qcow2" and "root=/dev/vda" in debian_image.cmdline


def test_cloud_init_finishes_and_configures_the_guest(debian_instance):
    # ssh() pins the host key from the seed (paramiko RejectPolicy): logging in at all
    # proves cloud-init installed nbcloud's host key and authorized key.
    status = debian_instance.ssh("cloud-init status --wait --long", check=False,
                                 timeout=BOOT_TIMEOUT)
    assert "status: done" in status, status
    assert debian_instance.ssh("hostname").strip() == NAME
    assert debian_instance.ssh("cat /root/runcmd-ran").strip() == f"runcmd ran on {NAME}"
    host_key = debian_instance.ssh("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    assert host_key == debian_instance.meta["hostkey"].split()[:2]
    datasource = debian_instance.ssh("cloud-init query platform 2>/dev/null || "
                                     "cat /run/cloud-init/ds-identify.log", check=False)
    assert "nocloud" in datasource.lower()


def test_the_root_is_a_copy_on_write_overlay(cloud, debian_instance, debian_image):
    from nbcloud.providers.libvirt.volumes import INSTANCE_POOL
    path, _ = cloud.provider.volumes(INSTANCE_POOL)[f"{NAME}.root.qcow2"]
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output", "json", path],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == debian_image.disk
    assert debian_instance.ssh("findmnt -no SOURCE /").strip() == "/dev/vda"
