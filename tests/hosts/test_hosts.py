"""The hosts of one cloud: `host list` says what each one has and holds, `--host` pins an
instance, `host remove` is refused while the host holds one and forgets an empty host
(its member network and VXLAN device go), bad input is refused in one line."""
from __future__ import annotations

import subprocess

import pytest

from nbcloud.core.errors import CloudError, InvalidSpec, NotFound
from nbcloud.ui import commands
from tests.hosts.conftest import domains_on

PINNED = "mh-pinned"


def magic(cloud, line: str):
    return commands.run(cloud, commands.parse(line.split()))


def links_of(fabric, index: int) -> str:
    """`ip -o link` in host `index`'s network namespace."""
    host = fabric.hosts[index - 1]
    prefix = ["nsenter", f"--net=/run/netns/{host.netns}"] if host.netns else []
    return subprocess.run([*prefix, "ip", "-o", "link"], capture_output=True, text=True,
                          check=True).stdout


def test_host_list_shows_each_host_its_capacity_and_accelerator(cloud, fabric):
    table = magic(cloud, "host list")
    assert table.columns[:3] == ["host", "uri", "state"]
    rows = {r[0].split()[0]: r for r in table.rows}
    assert sorted(rows) == ["mh-h1", "mh-h2", "mh-h3"]
    assert rows["mh-h1"][0] == "mh-h1 (home)"
    for host in fabric.hosts:
        row = dict(zip(table.columns, rows[host.name]))
        assert row["uri"] == host.uri and row["state"] == "up"
        assert row["vCPUs"].endswith(" x 4)")        # Nova's default CPU ratio
        assert row["accelerator"] == "tcg"


def test_host_pins_and_remove_is_refused_while_the_host_holds_it(cloud, fabric):
    cloud.instances.create(PINNED, flavor="t.nano", host="mh-h3", wait=False)
    try:
        assert cloud.provider.host_of(PINNED) == "mh-h3"
        assert PINNED in domains_on(fabric, 3)
        assert cloud.ctx.inventory.get("instance", PINNED).spec["host"] == "mh-h3"
        with pytest.raises(CloudError) as refused:
            magic(cloud, "host remove mh-h3")
        assert str(refused.value) == (f"host mh-h3 holds instance {PINNED}: `%cloud host "
                                      "drain mh-h3` moves them off, or delete them")
        assert "mh-h3" in [r[0] for r in magic(cloud, "host list").rows]
    finally:
        cloud.instances.delete(PINNED)
    assert PINNED not in domains_on(fabric, 3)
    assert "nbcloud" in links_of(fabric, 3)          # the member network's bridge
    try:
        assert str(magic(cloud, "host remove mh-h3")) == "removed host mh-h3"
        assert [r[0].split()[0] for r in magic(cloud, "host list").rows] == ["mh-h1", "mh-h2"]
        assert cloud.ctx.inventory.get("host", "mh-h3") is None
        assert "nbv-" not in links_of(fabric, 3)       # its VXLAN device went
        with pytest.raises(NotFound, match="^host 'mh-h3' is not a host of this cloud"):
            cloud.instances.create("mh-nowhere", flavor="t.nano", host="mh-h3", wait=False)
        assert "mh-nowhere" not in domains_on(fabric, 1) + domains_on(fabric, 2)
    finally:
        cloud.hosts.add("mh-h3", fabric.hosts[2].uri)


@pytest.mark.parametrize("line, error, message", [
    ("host add bad/name qemu:///system", InvalidSpec, "host name"),
    ("host add mh-x http://10.99.0.9/", InvalidSpec, "is not a libvirt URI"),
    ("host add mh-x qemu+ssh://root@10.99.0.2/system", InvalidSpec, "is host mh-h2 already"),
    ("host add mh-h2 qemu+ssh://root@10.99.0.3/system", InvalidSpec, "is taken already"),
    ("host add mh-x qemu+ssh://root@10.99.0.2/system --cpu-ratio 0", InvalidSpec,
     "from 0.05 to 64"),
    ("host remove mh-h1", InvalidSpec, "is the home host"),
    ("host remove mh-none", NotFound, "is not a host of this cloud"),
])
def test_bad_host_input_is_refused_in_one_line(cloud, line, error, message):
    before = [r[0] for r in magic(cloud, "host list").rows]
    with pytest.raises(error) as refused:
        magic(cloud, line)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert [r[0] for r in magic(cloud, "host list").rows] == before
