"""Volumes and pools on libvirt's test driver: what is created where, and every refusal
is one line that leaves libvirt and the inventory (resources and operations log) as
they were."""
import pytest

from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotFound
from nbcloud.core.spec import VolumeSpec


def snapshot(cloud):
    vols = sorted((v.pool, v.name, v.capacity) for v in cloud.provider.all_volumes())
    return (vols, cloud.provider.pool_names(),
            [(r.kind, r.name, r.state) for r in cloud.inventory.resources()],
            len(cloud.inventory.operations(10000)))


def test_create_puts_a_qcow2_in_the_tier_pool_and_records_it(test_cloud, unique):
    name = unique("v")
    vol = test_cloud.volumes.create(name, size="2G", tier="hdd")
    assert (vol.tier, vol.pool, vol.size, vol.kind) == ("hdd", "nbcloud-hdd", 2 << 30, "disk")
    assert vol.path == f"/nbcloud-test/hdd/{name}.hdd.qcow2"
    (res,) = [r for r in test_cloud.inventory.resources(kind="volume") if r.name == name]
    assert res.state == "available" and res.spec["tier"] == "hdd"
    assert name in [v.name for v in test_cloud.volumes.list()]
    assert "tier=hdd" in repr(vol) and "<b>volume</b>" in vol._repr_html_()
    vol.delete()
    assert name not in [v.name for v in test_cloud.volumes.list()]
    assert not [r for r in test_cloud.inventory.resources(kind="volume") if r.name == name]


@pytest.mark.parametrize("size", ["0", "1X", "-1G", "", "1.5G", None, True])
def test_bad_size_is_refused(size):
    with pytest.raises(InvalidSpec, match="size"):
        VolumeSpec("data", size)


def test_refusals_change_nothing(test_cloud, unique, tmp_path):
    cloud = test_cloud
    taken = unique("v")
    cloud.volumes.create(taken, size="1G")
    pool = unique("p")
    cloud.pools.create(pool, f"/nbcloud-test/{pool}")
    cloud.volumes.create(unique("v"), size="1M", pool=pool)
    before = snapshot(cloud)
    cases = [
        (lambda: cloud.volumes.create(unique("v"), size="12Q"), InvalidSpec),
        (lambda: cloud.volumes.create(unique("v"), size="1G", tier="nvme"), InvalidSpec),
        (lambda: cloud.volumes.create("Bad_Name", size="1G"), InvalidSpec),
        (lambda: cloud.volumes.create(taken, size="1G"), AlreadyExists),
        (lambda: cloud.volumes.create(taken, size="1G", tier="hdd"), AlreadyExists),
        (lambda: cloud.volumes.create(unique("v"), size="1G", pool="nbcloud"), CloudError),
        (lambda: cloud.volumes.create(unique("v"), size="1G", pool="nbcloud-images"),
         CloudError),
        (lambda: cloud.volumes.create(unique("v"), size="1G", pool="missing"), NotFound),
        (lambda: cloud.volumes.resize(taken, "512M"), CloudError),
        (lambda: cloud.volumes.resize(taken, "big"), InvalidSpec),
        (lambda: cloud.volumes.attach(taken, "missing-vm"), NotFound),
        (lambda: cloud.volumes.attach(taken, "test"), CloudError),     # not nbcloud's
        (lambda: cloud.volumes.attach("missing", "test"), NotFound),
        (lambda: cloud.volumes.detach(taken), CloudError),             # not attached
        (lambda: cloud.volumes.delete("missing"), NotFound),
        (lambda: cloud.pools.create(unique("p"), "/nbcloud-test/../etc"), InvalidSpec),
        (lambda: cloud.pools.create(unique("p"), "rel/dir"), InvalidSpec),
        (lambda: cloud.pools.create(pool, "/nbcloud-test/other"), AlreadyExists),
        (lambda: cloud.pools.create(unique("p"), f"/nbcloud-test/{pool}"), AlreadyExists),
        (lambda: cloud.pools.delete(pool), CloudError),                 # has a volume
        (lambda: cloud.pools.delete("nbcloud"), CloudError),
        (lambda: cloud.pools.delete("nbcloud-images"), CloudError),
        (lambda: cloud.pools.delete("nbcloud-ssd"), CloudError),
        (lambda: cloud.pools.delete("missing"), NotFound),
        (lambda: cloud.cdroms.create(unique("c"), tmp_path / "missing"), CloudError),
        (lambda: cloud.cdroms.create(taken, tmp_path), AlreadyExists),
    ]
    for call, error in cases:
        with pytest.raises(error) as exc:
            call()
        assert "\n" not in str(exc.value)
        assert snapshot(cloud) == before, str(exc.value)


def test_pool_list_shows_capacity_and_volume_count(test_cloud, unique):
    pool = unique("p")
    created = test_cloud.pools.create(pool, f"/nbcloud-test/{pool}")
    assert created.volumes == 0 and created.capacity > 0
    test_cloud.volumes.create(unique("v"), size="1M", pool=pool)
    (row,) = [p for p in test_cloud.pools.list() if p.name == pool]
    assert row.volumes == 1 and row.available <= row.capacity
    assert "volumes=1" in repr(row)


def test_magic_verbs_parse_and_refuse_in_one_line(test_cloud, unique):
    from nbcloud.ui import commands
    name = unique("v")
    run = lambda line: commands.run(test_cloud, commands.parse(line.split()))  # noqa: E731
    run(f"volume create {name} --size 64M --tier hdd")
    assert name in str(run("volume list"))
    assert "nbcloud-hdd" in str(run("pool list"))
    with pytest.raises(commands.CommandError) as exc:
        commands.parse(["volume", "create", name, "--size", "1G", "--tier", "tape"])
    assert "\n" not in str(exc.value) and "tape" in str(exc.value)
    with pytest.raises(commands.CommandError):
        commands.parse(["volume", "create", name])                    # --size required
    assert str(run(f"volume delete {name}")) == f"deleted volume {name}"
