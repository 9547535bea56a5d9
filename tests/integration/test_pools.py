"""dir storage pools on the real daemon: create, list with capacity, a volume in one,
and the refusals."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotFound


@pytest.fixture
def pool_dir(tmp_path):
    path = tmp_path / "st-pool"
    yield path


@pytest.fixture
def st_pool(cloud, pool_dir):
    """Pool `st-pool` in a fresh directory; removed afterwards with what is in it."""
    for name in ("st-pool", "st-pool2"):
        if name in cloud.provider.pool_names():
            for vol in cloud.volumes.list(kind=None):
                if vol.pool == name:
                    vol.delete()
            cloud.pools.delete(name)
    pool = cloud.pools.create("st-pool", str(pool_dir))
    yield pool
    for vol in cloud.volumes.list(kind=None):
        if vol.pool == "st-pool":
            vol.delete()
    if "st-pool" in cloud.provider.pool_names():
        cloud.pools.delete("st-pool")


def test_create_list_and_a_volume_in_it(cloud, st_pool, pool_dir):
    assert pool_dir.is_dir()                          # libvirt built the directory
    assert st_pool.path == str(pool_dir) and st_pool.volumes == 0
    st = os.statvfs(pool_dir)
    assert abs(st_pool.capacity - st.f_blocks * st.f_frsize) < 1 << 30
    assert 0 < st_pool.available <= st_pool.capacity
    vol = cloud.volumes.create("st-pvol", size="32M", tier="hdd", pool="st-pool")
    assert Path(vol.path) == pool_dir / "st-pvol.hdd.qcow2"
    assert Path(vol.path).exists() and vol.tier == "hdd"
    (row,) = [p for p in cloud.pools.list() if p.name == "st-pool"]
    assert row.volumes == 1
    assert any(r.name == "st-pool" for r in cloud.inventory.resources(cloud.uri, "pool"))
    from nbcloud.ui import commands
    table = str(commands.run(cloud, commands.parse(["pool", "list"])))
    assert "st-pool" in table and "capacity" in table and "available" in table


def test_refusals_change_nothing(cloud, st_pool, pool_dir, tmp_path):
    cloud.volumes.create("st-pvol", size="16M", pool="st-pool")

    def snapshot():
        return (cloud.provider.pool_names(),
                sorted(r.name for r in cloud.inventory.resources(cloud.uri)),
                len(cloud.inventory.operations(10000)))
    before = snapshot()
    cases = [
        (lambda: cloud.pools.delete("st-pool"), CloudError, "holds 1 volume"),
        (lambda: cloud.pools.delete("nbcloud"), CloudError, "nbcloud's own"),
        (lambda: cloud.pools.delete("nbcloud-images"), CloudError, "nbcloud's own"),
        (lambda: cloud.pools.delete("st-nopool"), NotFound, "does not exist"),
        (lambda: cloud.pools.create("st-pool2", str(tmp_path / ".." / "x")), InvalidSpec,
         "'..'"),
        (lambda: cloud.pools.create("st-pool2", "relative/dir"), InvalidSpec, "absolute"),
        (lambda: cloud.pools.create("st-pool", str(tmp_path / "other")), AlreadyExists,
         "exists already"),
        (lambda: cloud.pools.create("st-pool2", str(pool_dir)), AlreadyExists,
         "already the storage pool"),
        (lambda: cloud.pools.create("St Pool", str(tmp_path / "y")), InvalidSpec,
         "not allowed"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words) as exc:
            call()
        assert "\n" not in str(exc.value)
        assert snapshot() == before, str(exc.value)
    cloud.volumes.get("st-pvol").delete()
    cloud.pools.delete("st-pool")
    assert "st-pool" not in cloud.provider.pool_names()
    assert pool_dir.is_dir()                          # the directory is left alone
