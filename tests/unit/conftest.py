from __future__ import annotations

import itertools

import pytest

_seq = itertools.count()


@pytest.fixture
def test_cloud(tmp_path):
    """A Cloud on libvirt's in-process test driver, with its own inventory file."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    cloud = Cloud("test:///default", inventory=Inventory(tmp_path / "inv.sqlite"))
    yield cloud
    cloud.close()


@pytest.fixture
def ip(tmp_path):
    """An IPython shell with nbcloud loaded and connected to test:///default."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcloud")
    shell.run_line_magic("config", f"CloudMagics.inventory = '{tmp_path / 'inv.sqlite'}'")
    shell.run_line_magic("cloud", "connect test:///default")
    yield shell
    shell.run_line_magic("unload_ext", "nbcloud")


@pytest.fixture
def busybox():
    """Debian's busybox-static: the tiny image's shell, to run its scripts on the host."""
    from tests.needs import program
    return program("busybox", "Debian package busybox-static (scripts/setup.sh)")


@pytest.fixture
def unique():
    """A fresh resource name per call (the test driver's state is shared in-process)."""
    return lambda prefix="t": f"{prefix}{next(_seq)}"


@pytest.fixture
def domain(test_cloud, unique):
    """A running nbcloud-marked domain on the test driver (2 vCPUs, flavor c.micro)."""
    from nbcloud.providers.libvirt import xml as lx
    name = unique("mo-")
    conn = test_cloud.provider.conn
    dom = conn.defineXML(lx.domain_xml(lx.DomainDef(
        name=name, vcpus=2, memory=128 << 20, domain_type="test",
        boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(),
        metadata={"kind": "instance", "stack": "adhoc", "image": "tiny",
                  "flavor": "c.micro"})))
    dom.create()
    yield name
    if dom.isActive():
        dom.destroy()
    dom.undefine()
