"""The ops runbooks (notebooks/runbooks/) run by papermill with test parameters, on the
real daemon, and checked in what libvirt and the guests show afterwards.

The kernel and this module share one private nbcloud home (inventory and keys), so what
a runbook made can be checked, and removed if a test fails half-way. Each test that needs
the lab gets it up (brought up again if a test before took it down), so the tests pass
in any order and one at a time.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.needs import module

pytestmark = pytest.mark.integration

pm = module("papermill")

# qemu:///system here; tests/session/test_runbooks.py runs this module again on
# the session tier (NBCLOUD_URI=qemu:///session: user-mode networking, no lab network)
URI = os.environ.get("NBCLOUD_TEST_URI") or (
    os.environ["NBCLOUD_URI"] if os.environ.get("NBCLOUD_URI", "").startswith(
        "qemu:///session") else "qemu:///system")
SESSION = URI.startswith("qemu:///session")
RUNBOOKS = Path(__file__).resolve().parents[2] / "notebooks" / "runbooks"
LAB = "rb-t-lab"
LAB_CIDR = "10.213.71.0/24"
SNAP = "rb-t-snap"
FOREIGN = "rb-t-lk-foreign"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """NBCLOUD_HOME for this module and the runbooks' kernels (inherited by them)."""
    from nbcloud.core import config
    cached = config.home() / "accelerator.json"   # spares doctor a probe boot
    path = tmp_path_factory.mktemp("rb-home")
    if cached.exists():
        shutil.copy(cached, path / "accelerator.json")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBCLOUD_HOME", str(path))
        mp.setenv("NBCLOUD_URI", URI)
        yield path


@pytest.fixture(autouse=True)
def nbcloud_home(home):
    """The shared one (tests/conftest.py) for every test function, here: this module's."""
    return home


@pytest.fixture(scope="module")
def rb_cloud(home):
    """A Cloud on the runbooks' own inventory; removes whatever a failed test left."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    cloud = Cloud(URI, inventory=Inventory(home / "inventory.sqlite"))
    yield cloud
    for name in sorted(cloud.provider.managed()):
        if name.startswith("rb-t-"):
            cloud.instances.delete(name)
    if LAB in {s["name"] for s in cloud.inventory.stacks()}:
        cloud.stacks.destroy(LAB)
    if not SESSION and f"{LAB}-net" in [n.name for n in cloud.networks.list()]:
        cloud.networks.delete(f"{LAB}-net")
    subprocess.run(["virsh", "-c", URI, "undefine", FOREIGN], capture_output=True)
    cloud.close()


def run(book: str, out_dir: Path, **parameters) -> tuple[dict, object]:
    """Execute runbook `book` with `parameters`; its summary (the JSON its last cell
    prints) and the executed notebook."""
    out = out_dir / f"{book}-out.ipynb"
    nb = pm.execute_notebook(str(RUNBOOKS / f"{book}.ipynb"), str(out),
                             parameters=parameters, kernel_name="python3",
                             progress_bar=False, cwd=str(out_dir))
    cell = next(c for c in nb.cells if "summary" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return json.loads(text.strip().splitlines()[-1]), nb


_LAB: dict = {}     # the summary of the lab-up run that brought the lab up


@pytest.fixture
def lab(rb_cloud, tmp_path_factory):
    """lab-up.ipynb for 2 students on a network of its own, left up (teardown=False); run
    again when the lab is not up (the first test to need it, or after the teardown test)."""
    if not _LAB or not all(rb_cloud.provider.exists(n) for n in _LAB["instances"]):
        summary, _ = run("lab-up", tmp_path_factory.mktemp("lab"), students=2, prefix=LAB,
                         lab_cidr=LAB_CIDR, teardown=False)
        _LAB.clear()
        _LAB.update(summary)
    return dict(_LAB)


def test_lab_up_gives_each_student_an_instance_and_a_key(rb_cloud, lab):
    from nbcloud.services import keys, ssh
    members = [f"{LAB}-1", f"{LAB}-2"]
    assert lab["instances"] == members
    if SESSION:   # no bridges: each instance alone behind QEMU's NAT, SSH on a local port
        assert lab["network"] == "user"
    else:
        assert lab["network"] == f"{LAB}-net"
        assert str(rb_cloud.provider.network(f"{LAB}-net").network) == LAB_CIDR
    for row in lab["rows"]:
        name = row["instance"]
        inst = rb_cloud.instances.get(name)
        assert inst.state == "running" and inst.uuid == lab["uuids"][name]
        assert inst.meta["networks"] == lab["network"] and row["ip"] == inst.ip
        if SESSION:
            assert inst.ip == "127.0.0.1" and f"-p {inst.ssh_port} " in row["ssh command"]
        else:
            assert inst.ip.startswith("10.213.71.") and inst.ssh_port == 22
        # the student's own key, not nbcloud's default, logs in (host key pinned)
        key = keys.get_key(name)
        assert str(key.private_path) in row["ssh command"]
        client = ssh.connect(inst.ip, host_key=inst.meta["hostkey"], port=inst.ssh_port,
                             key_path=key.private_path)
        try:
            assert ssh.run(client, "hostname").stdout.strip() == name
        finally:
            client.close()
    assert rb_cloud.stacks.show(LAB).rows and len(rb_cloud.stacks.show(LAB)) == 2


def test_snapshot_stack_snapshots_and_reverts_every_instance(rb_cloud, lab, tmp_path):
    summary, _ = run("snapshot-stack", tmp_path, stack=LAB, snapshot=SNAP, revert=True)
    assert summary["members"] == lab["instances"] and not summary["demo"]
    for name in lab["instances"]:
        # in libvirt itself, and the guest is back before the marker was written
        assert SNAP in rb_cloud.provider.snapshot_names(name)
        assert summary["markers"][name] == "gone"
        inst = rb_cloud.instances.get(name)
        inst.close()
        assert inst.ssh("test -e /tmp/nbcloud-after-snapshot || echo absent").strip() \
            == "absent"


def test_health_report_shows_failures_and_graphs_the_stack(rb_cloud, lab, tmp_path):
    op = rb_cloud.inventory.begin(URI, "create", "instance", "rb-t-failed")
    rb_cloud.inventory.finish(op, "failed", "planted by test_rb_runbooks")
    summary, nb = run("health", tmp_path, stack=LAB, sample_seconds=3)
    assert summary["doctor_ok"] is True    # the doctor finds nothing to fix here
    assert {"id": op, "verb": "create", "kind": "instance", "name": "rb-t-failed",
            "result": "failed"} in summary["bad_operations"]
    assert sorted(summary["watched"]) == lab["instances"]
    for name in lab["instances"]:
        assert summary["samples"][name] >= 2
        # the samples are in the inventory, read from the running guest's counters
        rows = rb_cloud.inventory.samples(URI, name)
        assert len(rows) >= 2 and any(r["cpu"] is not None for r in rows)
        assert any((r["mem_used"] or 0) > 0 for r in rows)
    figures = [o["data"]["application/vnd.plotly.v1+json"] for c in nb.cells
               for o in c.get("outputs", []) if "application/vnd.plotly.v1+json"
               in o.get("data", {})]
    assert len(figures) == 2   # the live view's snapshot and the history
    points = [len(t.get("x") or ()) for t in figures[0]["data"]]
    assert max(points) >= 2


def test_leaks_finds_and_removes_only_the_leaks(rb_cloud, lab, tmp_path):
    # plants: a running instance whose inventory row is gone, a stopped adhoc one,
    # a row whose domain is gone, and a domain nbcloud did not make
    rb_cloud.instances.create("rb-t-lk-row", wait=False)
    rb_cloud.inventory.remove(URI, "instance", "rb-t-lk-row")
    rb_cloud.instances.create("rb-t-lk-stop", wait=False)
    subprocess.run(["virsh", "-c", URI, "destroy", "rb-t-lk-stop"], check=True,
                   capture_output=True)
    rb_cloud.inventory.put(URI, "instance", "rb-t-lk-ghost", state="running")
    xml = (f"<domain type='qemu'><name>{FOREIGN}</name><memory unit='MiB'>64</memory>"
           "<os><type arch='x86_64'>hvm</type></os></domain>")
    subprocess.run(["virsh", "-c", URI, "define", "/dev/stdin"], input=xml, text=True,
                   check=True, capture_output=True)
    planted = {"rb-t-lk-row", "rb-t-lk-stop"}

    dry, _ = run("leaks", tmp_path, older_than=0, only="rb-t-*", dry_run=True)
    why = {leak["name"]: leak["why"] for leak in dry["leaks"]}
    assert set(why) == planted   # the lab's instances (in a stack, running) are no leak
    assert "no inventory row" in why["rb-t-lk-row"]
    assert "adhoc" in why["rb-t-lk-stop"] and "stopped" in why["rb-t-lk-stop"]
    assert dry["ghosts"] == ["rb-t-lk-ghost"] and FOREIGN in dry["unmanaged"]
    assert planted <= set(rb_cloud.provider.managed())   # a dry run deletes nothing

    wet, _ = run("leaks", tmp_path, older_than=0, only="rb-t-*", dry_run=False)
    assert set(wet["deleted"]) == planted and wet["forgotten"] == ["rb-t-lk-ghost"]
    volumes = {v.name() for v in rb_cloud.provider.conn.storagePoolLookupByName("nbcloud")
               .listAllVolumes()}
    for name in planted:   # the domain and its disks
        assert not rb_cloud.provider.exists(name)
        assert not [v for v in volumes if v.startswith(name + ".")]
    assert "rb-t-lk-ghost" not in {r.name for r in rb_cloud.inventory.resources(URI)}
    assert rb_cloud.provider.exists(FOREIGN)   # listed, never touched
    for name in lab["instances"]:
        assert rb_cloud.instances.get(name).state == "running"


def test_lab_teardown_leaves_nothing(rb_cloud, lab, tmp_path):
    from nbcloud.services import keys
    summary, _ = run("lab-up", tmp_path, students=2, prefix=LAB, lab_cidr=LAB_CIDR,
                     teardown=True)
    assert summary["uuids"] == lab["uuids"]   # the same instances: apply changed nothing
    assert summary["left"] == []
    for name in lab["instances"]:
        assert not rb_cloud.provider.exists(name)
        assert name not in [k.name for k in keys.list_keys()]
    if not SESSION:
        assert f"{LAB}-net" not in [n.name for n in rb_cloud.networks.list()]
