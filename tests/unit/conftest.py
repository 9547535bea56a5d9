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
def unique():
    """A fresh resource name per call (the test driver's state is shared in-process)."""
    return lambda prefix="t": f"{prefix}{next(_seq)}"
