"""The host agent on the real daemon: an instance pool keeps autoscaling with no notebook
process alive, the agent comes back after `kill -9`, and a kernel opened afterwards is fed
from the agent's samples instead of sampling (and leaves scaling to it).

The "kernels" here are `nbcloud` command-line processes that make the pool and start a
CPU burner in its member, then exit; while the pool grows, this process holds no Cloud
at all, only reads the inventory file. The agent serves this test's own inventory and
folder, so no one else's agent or inventory is involved.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from tests.waiting import wait_for
from tests.real_daemon import URI

from nbcloud.agent import control, supervisor
from nbcloud.api import Cloud
from nbcloud.inventory import Inventory

POOL = "agt-as"
BURN = "(while :; do :; done) >/dev/null 2>&1 </dev/null & echo $! > /tmp/burn.pid"


@pytest.fixture
def place(tmp_path, monkeypatch):
    """Where the agent runs: its folder, and an inventory of this test's own that the
    command line (the default inventory of NBCLOUD_HOME) and the agent share."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("NBCLOUD_HOME", str(home))
    p = control.Host(URI, state=tmp_path / "host.json", inventory=home / "inventory.sqlite")
    yield p
    supervisor.stop(p.folder)
    c = Cloud(URI, inventory=Inventory(p.inventory))
    try:
        if any(pool.name == POOL for pool in c.ipools.list()):
            c.ipools.delete(POOL)
        for name in (f"{POOL}-1", f"{POOL}-2"):
            if c.provider.exists(name):
                c.instances.delete(name)
    finally:
        c.close()


def nbcloud(*words: str) -> str:
    """One `nbcloud` command in a process of its own, like a kernel that runs a cell and
    goes away."""
    out = subprocess.run([sys.executable, "-m", "nbcloud.ui.cli", "--uri", URI, *words],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _pool(inv: Inventory) -> dict:
    return next(r.spec for r in inv.resources(URI, "ipool") if r.name == POOL)


def test_the_agent_scales_a_pool_with_no_kernel_and_survives_kill_9(place):
    assert control.start_agent(place, wait=120)[-1] == "agent: nothing to restore"
    nbcloud("ipool", "create", POOL, "--image", "tiny", "--flavor", "c.nano", "--network",
            "nbcloud", "--size", "1", "--scale-out", "cpu>10% for 6s", "--min", "1",
            "--max", "2")
    inv = Inventory(place.inventory)
    assert _pool(inv)["members"] == [f"{POOL}-1"]
    # the agent saw the pool while it was being made, empty: it must not have made a
    # member of its own beside the create's (it once did, and left its DNS name behind)
    creates = [op for op in inv.operations(200) if op["verb"] == "create"
               and op["kind"] == "instance"]
    assert [(op["name"], op["result"]) for op in creates] == [(f"{POOL}-1", "ok")], creates

    first = supervisor.agent_pid(place.folder)
    os.kill(first, signal.SIGKILL)
    again = wait_for(lambda: (p := supervisor.agent_pid(place.folder)) not in (None, first)
                     and p, 60, "the supervisor to start the agent again")
    wait_for(lambda: (row := inv.agent(URI)) is not None and row["pid"] == again, 60,
             "the new agent's heartbeat")

    nbcloud("instance", "ssh", f"{POOL}-1", "--", BURN)   # and no process of ours is left
    wait_for(lambda: _pool(inv)["members"] == [f"{POOL}-1", f"{POOL}-2"], 420,
             "the agent to grow the pool")
    scaled = [op for op in inv.operations(200)
              if (op["verb"], op["name"]) == ("scale", POOL)]
    assert scaled and scaled[0]["pid"] == again and \
        "autoscale out: cpu>10% for 6s" in scaled[0]["detail"], scaled[:1]
    assert inv.samples(URI, f"{POOL}-1")[-1]["cpu"] > 10   # what the agent sampled

    # a kernel now: it reads the agent's samples and does not scale
    c = Cloud(URI, inventory=Inventory(place.inventory))
    try:
        stats = c.provider.domain_stats
        asked = []
        c.provider.domain_stats = lambda names: asked.append(names) or stats(names)
        assert c.ipools.get(POOL).size == 2 and not c.autoscaler.attached
        c.monitor.watch(f"{POOL}-2")
        assert f"{POOL}-2" in inv.watched(URI)     # the agent is asked to sample it
        wait_for(lambda: c.monitor.latest.get(f"{POOL}-2") is not None and
                 c.monitor.latest[f"{POOL}-2"].cpu is not None, 60,
                 "a sample of the new member from the agent")
        assert c.monitor.source == "agent" and asked == []
        c.instances.get(f"{POOL}-1").ssh("kill $(cat /tmp/burn.pid)")
    finally:
        c.close()
