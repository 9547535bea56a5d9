"""Integration tier: a real libvirt daemon (qemu:///system) and real TCG guests.

`make test` brings the daemon up inside the test network namespace and runs pytest there,
because guest addresses are reachable only inside it.
"""
from __future__ import annotations

import pytest

from tests.real_daemon import open_cloud


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    """A Cloud on the real daemon, with an inventory of its own."""
    c = open_cloud(tmp_path_factory, "integration")
    yield c
    c.close()


@pytest.fixture
def ip(cloud, tmp_path):
    """An IPython shell with nbcloud loaded, on the real daemon, with its own inventory."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcloud")
    shell.run_line_magic("config", f"CloudMagics.inventory = '{tmp_path / 'inv.sqlite'}'")
    shell.run_line_magic("cloud", f"connect {cloud.uri}")
    yield shell
    shell.run_line_magic("unload_ext", "nbcloud")


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
