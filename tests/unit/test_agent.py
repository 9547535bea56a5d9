"""The host agent without a daemon: its inventory registry (one agent per URI, heartbeats,
leases), kernels deferring to it (the monitor reads its rows, the autoscaler decides
nothing, a pool's resize is claimed once), the drift a host restart leaves, and the
supervisor restarting a SIGKILLed agent on `test:///default` (real processes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nbcloud.core.events import INSTANCE_STATE
from nbcloud.inventory import Inventory, Resource
from nbcloud.plan import LiveState, compute, drift
from nbcloud.plan.runtime import BALANCER_DOWN, STOPPED
from nbcloud.core.stackfile import parse

URI = "test:///default"


@pytest.fixture
def other_process():
    """A live process that is not this one (an agent's pid, as a kernel sees it)."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def test_one_live_agent_per_uri_and_heartbeats(tmp_path, other_process):
    inv = Inventory(tmp_path / "inv.sqlite")
    assert inv.claim_agent(URI, other_process, grace=15) is None
    assert inv.agent(URI)["pid"] == other_process
    taken = inv.claim_agent(URI, os.getpid(), grace=15)   # a second agent is refused
    assert taken is not None and taken["pid"] == other_process
    assert inv.beat_agent(URI, other_process, states={"web": "running"}, note="restored")
    row = inv.agent(URI)
    assert (row["states"], row["note"]) == ({"web": "running"}, "restored")
    assert not inv.beat_agent(URI, os.getpid())           # not its row: no beat
    inv.release_agent(URI, other_process)
    assert inv.agent(URI) is None
    # a dead agent's row is taken over at once; a silent one stops counting after grace
    dead = subprocess.Popen(["true"])
    dead.wait()
    inv.claim_agent(URI, dead.pid, grace=15)
    assert inv.claim_agent(URI, os.getpid(), grace=0.2) is None
    assert inv.agent(URI)["pid"] == os.getpid()
    time.sleep(0.3)
    assert inv.agent(URI) is None


def test_watch_leases_end(tmp_path):
    inv = Inventory(tmp_path / "inv.sqlite")
    inv.watch(URI, ["a", "b"], time.time() + 60)
    inv.watch(URI, ["c"], time.time() - 1)
    assert inv.watched(URI) == ["a", "b"]
    inv.unwatch(URI, ["a"])
    assert inv.watched(URI) == ["b"] and inv.watched("qemu:///other") == []


def test_a_kernels_monitor_reads_the_agents_rows_and_states(test_cloud, domain,
                                                            other_process):
    inv, mon = test_cloud.inventory, test_cloud.monitor
    inv.claim_agent(URI, other_process, grace=30)
    mon.watch(domain, start=False)
    assert inv.watched(URI) == [domain]          # the agent is asked to sample it
    t = time.time()
    # what the agent wrote: two ticks since the kernel last read
    inv.add_samples(URI, [(domain, t - 0.5, 42.0, 1e6, 0, 0, 0, 0),
                          (domain, t, 43.0, 1e6, 0, 0, 0, 0)])
    seen = []
    mon.add_listener(lambda tick: seen.append(tick[domain].cpu))
    changed = []
    test_cloud.ctx.events.on(INSTANCE_STATE, lambda names: changed.extend(names))
    inv.beat_agent(URI, other_process, states={domain: "running"})
    last = mon.tick()
    assert mon.source == "agent" and seen == [42.0, 43.0] and last[domain].cpu == 43.0
    assert mon.tick() == {} and seen == [42.0, 43.0]   # nothing new, nothing replayed
    inv.beat_agent(URI, other_process, states={domain: "stopped"})
    assert mon.tick()[domain].state == "stopped" and changed == [domain]
    assert len(inv.samples(URI, domain)) == 2        # the kernel wrote no row itself
    mon.unwatch(domain)
    assert inv.watched(URI) == []
    inv.release_agent(URI, other_process)
    mon.watch(domain, start=False)
    assert mon.tick()[domain].state == "running" and mon.source == "here"


def test_kernels_neither_scale_nor_resize_twice(test_cloud, other_process):
    from nbcloud.workflows.instance_pools import KIND
    pools = test_cloud.ipools
    test_cloud.ctx.inventory.put(KIND, "p", state="active", spec={
        "members": [], "resized": 5.0, "lb": None, "template": {},
        "policy": {"scale_out": "cpu>50% for 10s", "min": 1, "max": 2}})
    assert pools.claim_resize("p", 5.0)
    assert not pools.claim_resize("p", 5.0)    # a second process that read the same record
    test_cloud.inventory.claim_agent(URI, other_process, grace=30)
    assert test_cloud.autoscaler.step() == []  # the agent decides, not this kernel


def test_an_empty_inventory_an_agent_serves_is_not_rebuilt_from_libvirt(tmp_path, domain,
                                                                        other_process):
    from nbcloud.api import Cloud
    served = Inventory(tmp_path / "served.sqlite")
    served.claim_agent(URI, other_process, grace=30)
    for inv, rebuilt in ((served, False), (Inventory(tmp_path / "lost.sqlite"), True)):
        cloud = Cloud(URI, inventory=inv)
        try:
            assert (domain in {r.name for r in inv.resources(URI, "instance")}) is rebuilt
        finally:
            cloud.close()
    agent_side = Inventory(tmp_path / "agent.sqlite")
    Cloud(URI, inventory=agent_side, rebuild_empty=False).close()
    assert agent_side.resources(URI) == []


def _rec(kind, name, spec=None, state="active"):
    return Resource("u", kind, name, "s", spec or {}, None, state)


def test_drift_names_what_a_restart_leaves_and_apply_plans_to_repair_it():
    entry = {"meta": {"flavor": "t.nano", "image": "tiny", "networks": "lab", "stack": "s"},
             "vcpus": 1, "memory": 128 << 20, "running": False}
    live = LiveState(
        domains={"web": entry},
        networks={"lab": {"cidr": "10.80.0.0/24", "mode": "nat", "managed": True,
                          "active": False}},
        loadbalancers={"lb": {"network": "lab", "port": 80, "members": ["web"],
                              "algorithm": "roundrobin", "member_port": 80}},
        balancers_running={"lb": False}, forwards=set(),
        dns={"lab": {"web": "10.80.0.2"}},
        ipools={"p": {"members": ["p-1"]}})
    rec = [_rec("instance", "web", state="running"), _rec("network", "lab"),
           _rec("loadbalancer", "lb"), _rec("floating", "web-20000"),
           _rec("dns", "www.lab", {"network": "lab", "name": "www", "type": "A",
                                   "value": "192.0.2.1"}),
           _rec("ipool", "p", {"members": ["p-1"]})]
    rows = {(k, n): what for k, n, _s, what in drift(rec, live)}
    assert rows[("instance", "web")].startswith(STOPPED)
    assert rows[("network", "lab")].startswith("inactive")
    assert rows[("loadbalancer", "lb")].startswith(BALANCER_DOWN)
    assert "forwarding rules are missing" in rows[("floating", "web-20000")]
    assert "not answered by network lab's DNS" in rows[("dns", "www.lab")]
    assert rows[("ipool", "p")] == "member p-1 was deleted behind nbcloud's back"
    body = ("network:\n  lab: {cidr: 10.80.0.0/24}\ninstance:\n  web: {flavor: t.nano, "
            "network: [lab]}\nloadbalancer:\n  lb: {network: lab, port: 80, members: "
            "[web]}\n")
    plan = compute(parse(body, {}, "s"), rec[:3], live)
    assert {(a.op, a.kind, a.changes[-1]) for a in plan.actions} == {
        ("update", "network", "inactive behind nbcloud's back (its guests have no network)"),
        ("update", "instance", STOPPED), ("update", "loadbalancer", BALANCER_DOWN)}
    # nothing to report where it all runs (and None: balancers are no processes here)
    fine = LiveState(domains={"web": {**entry, "running": True}},
                     networks={"lab": {**live.networks["lab"], "active": True}},
                     balancers_running={"lb": None}, forwards={"web-20000"},
                     dns={"lab": {"www": "192.0.2.1"}}, ipools={"p": {"members": []}})
    assert drift(rec[:5], fine) == []


def test_the_supervisor_restarts_a_killed_agent_and_one_agent_holds_the_host(tmp_path):
    from nbcloud.agent import control, supervisor
    from nbcloud.agent.daemon import EXIT_TAKEN
    place = control.Host(URI, state=tmp_path / "host.json", inventory=tmp_path / "i.sqlite")
    out = control.start_agent(place, wait=60)
    assert out[-1] == "agent: nothing to restore", out
    try:
        first = supervisor.agent_pid(place.folder)
        assert first and control.start_agent(place)[0].startswith("the host agent runs")
        second = subprocess.run([sys.executable, "-m", "nbcloud.agent", "run", "--uri", URI,
                                 "--folder", str(place.folder)], capture_output=True,
                                timeout=60)
        assert second.returncode == EXIT_TAKEN      # the host's lock is held
        os.kill(first, signal.SIGKILL)
        again = _until(lambda: (p := supervisor.agent_pid(place.folder)) != first and p,
                       30, "the supervisor to start the agent again")
        inv = Inventory(place.inventory)
        row = _until(lambda: (row := inv.agent(URI)) and row["pid"] == again and
                     row["note"] != "restoring" and row, 30, "the new agent's heartbeat")
        # a takeover seconds after a crash is no host restart: nothing is started
        assert row["note"] == f"took over from agent pid {first}: nothing restored"
    finally:   # (not control.down: that also stops guests, balancers, nft tables)
        assert supervisor.stop(place.folder)[0].startswith("stopped the host agent")
    assert supervisor.running(place.folder) is None and inv.agent(URI) is None
