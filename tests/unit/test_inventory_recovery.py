"""Recovery on open: a corrupt inventory is moved aside and rebuilt from the nbcloud
metadata on libvirt objects; operations of dead processes are settled as interrupted."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import libvirt
import pytest
from IPython.core.error import UsageError

from nbcloud.api import Cloud
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt import xml as lx


def _define_marked(conn: libvirt.virConnect, name: str, stack: str, vols: str = "") -> None:
    """A domain carrying nbcloud's metadata, defined straight on the test driver."""
    meta = {"kind": "instance", "stack": stack, "image": "tiny", "flavor": "t.nano",
            "networks": "lab", "volumes": vols, "ip": "10.80.0.5", "key": "default"}
    d = lx.DomainDef(name=name, vcpus=1, memory=128 << 20, domain_type="test",
                     boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(), metadata=meta)
    conn.defineXML(lx.domain_xml(d))


@pytest.fixture
def marked_domain(unique):
    """An nbcloud-marked domain of stack `rs` on test:///default (undefined afterwards)."""
    conn = libvirt.open("test:///default")
    name = unique("rc-")
    _define_marked(conn, name, "rs")
    yield name
    conn.lookupByName(name).undefine()
    conn.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_is_moved_aside_and_recreated(tmp_path, damage):
    path = tmp_path / "inv.sqlite"
    inv = Inventory(path)
    for i in range(300):
        inv.put("u", "instance", f"w{i}", state="running", spec={"pad": "x" * 200})
    inv.close()
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{path}{extra}"):
            os.remove(f"{path}{extra}")
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:
        path.write_bytes(data[: len(data) // 2])
    inv = Inventory(path)
    assert inv.rebuilt and inv.moved_aside.name.startswith("inv.sqlite.corrupt-")
    assert inv.moved_aside.exists() and inv.resources() == []
    inv.put("u", "instance", "new", state="running")  # the fresh file works
    assert [r.name for r in inv.resources()] == ["new"]
    assert Inventory(path).rebuilt is False


def test_garbage_inventory_is_rebuilt_from_libvirt(tmp_path, marked_domain):
    path = tmp_path / "inv.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cloud = Cloud("test:///default", inventory=Inventory(path))
    try:
        assert cloud.recovery[0].startswith("the inventory was corrupt: moved aside to")
        assert any(n.startswith("rebuilt ") for n in cloud.recovery)
        (row,) = [r for r in cloud.inventory.resources(cloud.uri, "instance")
                  if r.name == marked_domain]
        assert (row.stack, row.spec["flavor"], row.spec["networks"]) == ("rs", "t.nano",
                                                                          ["lab"])
        assert row.uuid and row.state == "stopped"
        assert "test" not in {r.name for r in cloud.inventory.resources(cloud.uri)}
    finally:
        cloud.close()


def test_empty_inventory_is_rebuilt_when_libvirt_has_ours(tmp_path, marked_domain):
    cloud = Cloud("test:///default", inventory=Inventory(tmp_path / "inv.sqlite"))
    try:
        assert marked_domain in {r.name for r in cloud.inventory.resources(cloud.uri)}
    finally:
        cloud.close()


def test_recovered_network_is_claimed_by_the_stack_declaring_it(test_cloud, unique):
    net = unique("rcn")
    test_cloud.networks.create(net, "10.93.0.0/24", "isolated", stack="s1")
    test_cloud.inventory.remove(test_cloud.uri, "network", net)
    from nbcloud.workflows.rebuild import rebuild
    rebuild(test_cloud.services)
    (row,) = [r for r in test_cloud.inventory.resources(test_cloud.uri, "network")
              if r.name == net]
    assert (row.stack, row.spec["recovered"]) == ("adhoc", True)
    body = f"network:\n  {net}: {{cidr: 10.93.0.0/24, mode: isolated}}\n"
    assert test_cloud.stacks.apply("s1", body).actions == []
    (row,) = [r for r in test_cloud.inventory.resources(test_cloud.uri, "network")
              if r.name == net]
    assert row.stack == "s1" and "recovered" not in row.spec
    test_cloud.stacks.destroy("s1")
    assert net not in test_cloud.provider.network_names()


def test_operation_of_a_dead_process_is_marked_interrupted(tmp_path):
    path = tmp_path / "inv.sqlite"
    code = ("import sys; from nbcloud.inventory import Inventory; "
            "Inventory(sys.argv[1]).begin('u', 'create', 'instance', 'half')")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    inv = Inventory(path)
    mine = inv.begin("u", "create", "instance", "mine")
    assert [o["name"] for o in inv.stale()] == ["half"]   # ours is still under way
    cloud = Cloud("test:///default", inventory=inv)
    try:
        assert any("(create instance half) was interrupted" in n for n in cloud.recovery)
        (half,) = [o for o in inv.operations() if o["name"] == "half"]
        assert half["result"] == "interrupted" and half["finished"]
        assert [o["name"] for o in inv.unfinished()] == ["mine"]
        assert inv.resolve(mine, "rolled back", "undone by hand")
        assert not inv.resolve(mine, "ok")   # settled once only
    finally:
        cloud.close()


def test_old_schema_gains_the_pid_column(tmp_path):
    path = tmp_path / "inv.sqlite"
    db = sqlite3.connect(path)
    from nbcloud.inventory import _MIGRATIONS
    db.executescript(_MIGRATIONS[1] + "PRAGMA user_version=1;")
    db.close()
    inv = Inventory(path)
    op = inv.begin("u", "create", "instance", "x")
    assert inv.unfinished()[0]["pid"] == os.getpid() and op


def test_recover_verb_rolls_back_an_interrupted_create(ip):
    """%cloud doctor lists an interrupted create with its id; %cloud recover settles it."""
    from nbcloud import _magics
    inv = _magics.api.inventory
    op = inv.begin(_magics.api.uri, "create", "instance", "gone-vm", image="tiny")
    inv.resolve(op, "interrupted", "its process died")
    report = ip.run_line_magic("cloud", "doctor")
    assert f"{op}: create instance gone-vm" in report["interrupted operations"]
    msg = ip.run_line_magic("cloud", f"recover {op}")
    assert f"operation {op} rolled back" in str(msg)
    assert inv.operation_by_id(op)["result"] == "rolled back"
    report = ip.run_line_magic("cloud", "doctor")
    assert "interrupted operations" not in [c.name for c in report.checks]
    with pytest.raises(UsageError, match="operation's number"):
        ip.run_line_magic("cloud", "recover first")
