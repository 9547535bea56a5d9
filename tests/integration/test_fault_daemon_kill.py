"""Fault: the process that drives libvirt dies between intent and outcome.

This kills the CLIENT, not the libvirt daemon: an instance create runs in a child process,
which is SIGKILLed once its intent is in the operations log and its domain is defined,
before the outcome is recorded. (Killing libvirtd itself is done on a private daemon, in
tests/reliability/test_daemon_kill.py: this one is shared by the other tests.)
A new Cloud on the same inventory then reports the operation interrupted, and rolling it
back leaves nothing behind: no domain, volumes, address reservations or inventory row."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nbcloud.api import Cloud
from nbcloud.core.errors import CloudError
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt.volumes import INSTANCE_POOL
from nbcloud.services import keys
from nbcloud.workflows.rebuild import _reserved_macs

NAME = "fk-vm"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = textwrap.dedent("""
    import sys
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    cloud = Cloud(sys.argv[1], inventory=Inventory(sys.argv[2]))
    cloud.instances.create(sys.argv[3], image="tiny", flavor="t.nano", network="nbcloud")
    print("created")
""")


def _leftovers(c: Cloud) -> list[str]:
    out = []
    if c.provider.exists(NAME):
        out.append("domain")
    vols = {v.name() for v in c.provider.pool(INSTANCE_POOL).listAllVolumes(0)}
    out += sorted(v for v in vols if v.startswith(f"{NAME}."))
    out += [f"mac {m}" for m in _reserved_macs(c, "nbcloud", NAME)]
    out += [f"row {r.name}" for r in c.inventory.resources(c.uri, "instance") if r.name == NAME]
    return out


def _clean(c: Cloud) -> None:
    if c.provider.exists(NAME):
        c.instances.delete(NAME)
    for suffix in ("seed.iso", "root.qcow2", "local.qcow2"):
        c.provider.delete_volume(INSTANCE_POOL, f"{NAME}.{suffix}")
    for mac in _reserved_macs(c, "nbcloud", NAME):
        c.provider.release_address("nbcloud", mac)


def test_client_killed_between_intent_and_outcome_is_rolled_back(cloud, tmp_path):
    path = tmp_path / "fk.sqlite"
    watcher = Cloud(cloud.uri, inventory=Inventory(path))
    _clean(watcher)
    keys.user_key("default")
    env = {**os.environ, "PYTHONPATH": ROOT}
    child = subprocess.Popen([sys.executable, "-c", CHILD, cloud.uri, str(path), NAME],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        op = None
        while time.monotonic() < deadline and child.poll() is None:
            started = [o for o in watcher.inventory.unfinished()
                       if (o["verb"], o["kind"], o["name"]) == ("create", "instance", NAME)]
            if started and watcher.provider.exists(NAME):
                op = started[0]
                break
            time.sleep(0.05)
        if op is None:
            pytest.fail(f"the child never reached 'intent recorded, domain defined': "
                        f"{child.communicate()}")
        os.kill(child.pid, signal.SIGKILL)  # the child we started, not libvirtd
        child.wait(30)
        assert child.returncode == -signal.SIGKILL
        assert watcher.inventory.operation_by_id(op["id"])["result"] == "started"
        watcher.close()

        again = Cloud(cloud.uri, inventory=Inventory(path))
        try:
            assert any(f"operation {op['id']} (create instance {NAME}) was interrupted" in n
                       for n in again.recovery), again.recovery
            assert again.inventory.operation_by_id(op["id"])["result"] == "interrupted"
            assert "domain" in _leftovers(again)  # half-made: what rollback must remove
            with pytest.raises(CloudError, match="not a way"):
                again.recover(op["id"], "retry")
            removed = again.recover(op["id"], "rollback")
            assert f"domain {NAME}" in removed
            assert _leftovers(again) == []
            done = again.inventory.operation_by_id(op["id"])
            assert done["result"] == "rolled back" and done["finished"]
            with pytest.raises(CloudError):  # settled once: not again
                again.recover(op["id"], "rollback")
        finally:
            _clean(again)
            again.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
