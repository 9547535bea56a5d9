"""A host restart loses nothing: `host down` then `host up` (what a reboot does) on a
private libvirtd, with the host agent; and `%cloud drift` tells the truth about what a
restart (or a crash) leaves stopped, with `apply` repairing a stack's own.

The daemon is tests/reliability/private_daemon.py's (its own network and mount
namespaces): restarting the shared one would cut every other test off. This module runs
inside the private daemon's network namespace (`PrivateDaemon.inside`), where its guests,
bridges, HAProxys and nft rules are; `host up`/`host down` act on that daemon through
their URI, state file and netns parameters.

The cloud: a stack with an instance (a volume, a security group, httpd), a balancer in
front of it and an instance pool that joins the balancer; a port forward to the instance
and a DNS record; and a second instance with a synced folder.
"""
from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest
from tests.waiting import wait_for
from tests.reliability.private_daemon import PrivateDaemon

from nbcloud.agent import control, supervisor
from nbcloud.api import Cloud
from nbcloud.core.errors import SSHError
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt.provider import LibvirtProvider

TCG = {"accelerator": "tcg", "reason": "KVM does not work on this machine"}
GATEWAY, NET = "10.77.0.1", "nbcloud"
HTTPD = """#!/bin/sh
mkdir -p /srv/www && hostname > /srv/www/index.html && httpd -p 80 -h /srv/www
"""
STACK = """
volume:
  agt-rs-data: {size: 64M, tier: hdd}
secgroup:
  agt-rs-web: {rules: ["tcp 22", "tcp 80"]}
instance:
  agt-rs-web: {image: tiny, flavor: t.nano, network: [nbcloud], volume: [agt-rs-data],
               secgroup: [agt-rs-web], user_data: "{httpd}"}
loadbalancer:
  agt-rs-lb: {network: nbcloud, port: 8080, member_port: 80, members: [agt-rs-web]}
ipool:
  agt-rs-pool: {image: tiny, flavor: t.nano, network: nbcloud, size: 1, lb: agt-rs-lb,
                user_data: "{httpd}"}
"""
RECORD = ("agt-rs-name", GATEWAY)   # a record may point at its network's own addresses only


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A private libvirtd with nbcloud's pools (the tiny image copied in); this module's
    thread runs in its network namespace until the end."""
    with pytest.MonkeyPatch.context() as mp:
        # module fixtures run before the per-test home is set: the same one, from here on
        mp.setenv("NBCLOUD_HOME", str(tmp_path_factory.getbasetemp() / "nbcloud-home"))
        yield from _private_daemon(tmp_path_factory.mktemp("agt-privd"))


def _private_daemon(root):
    d = PrivateDaemon(root)
    d.prepare()
    d.start()
    d.with_nbcloud_pools()
    with d.inside():
        yield d
        supervisor.stop(_place(d).folder)
        if d.proc is None or not d.answers():
            d.start()
        LibvirtProvider(d.uri).stop_balancers()
        d.wipe()
    d.stop()
    d.release_netns()


def _place(d: PrivateDaemon) -> control.Host:
    return control.Host(d.uri, state=d.root / "host.json", netns=d.netns,
                        inventory=d.root / "inventory.sqlite")


def _cloud(d: PrivateDaemon) -> Cloud:
    c = Cloud(d.uri, inventory=Inventory(_place(d).inventory))
    c._accel = TCG   # no probe boot: KVM is not usable here
    c.paths["logs"].mkdir(parents=True, exist_ok=True)
    c.ensure_default_network()
    return c


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode().strip()
    except OSError:
        return ""


def _ssh(inst, command: str) -> str:
    """The command's output, '' when SSH failed (a busy TCG guest resets a connection
    now and then: the callers wait on a condition and ask again)."""
    try:
        return inst.ssh(command, check=False)
    except SSHError:
        return ""


def _lookup(inst, name: str) -> str:
    out = _ssh(inst, f"nslookup -type=a {name} 2>/dev/null")
    answers = out.split("Name:", 1)[1] if "Name:" in out else ""
    return next((line.split()[-1] for line in answers.splitlines()
                 if line.startswith("Address")), "")


def _drift(cloud) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["name"], r["drift"]) for r in cloud.stacks.drift()]


@pytest.fixture(scope="module")
def made(daemon, tmp_path_factory):
    """The cloud described above, made and answering; returns what the tests check."""
    share = tmp_path_factory.mktemp("agt-share")
    (share / "kept.txt").write_text("kept across a restart\n")
    c = _cloud(daemon)
    try:
        c.stacks.apply("agt-rs", STACK, {"httpd": HTTPD})
        fwd = c.floating.create("agt-rs-web", 80)
        c.dns.add(NET, *RECORD)
        c.instances.create("agt-rs-files", image="tiny", flavor="t.nano", network=NET,
                           sync=[f"{share}:/mnt/host"])
        yield {"forward": fwd, "share": share}
    finally:
        c.close()


def _answering(cloud, fwd) -> None:
    """The balancer spreads over both members, the forward reaches the instance, the
    record resolves from a guest, the folder is mounted: bounded waits, no sleeps."""
    web = cloud.instances.get("agt-rs-web")
    wait_for(lambda: _get(f"http://{GATEWAY}:{fwd.host_port}/") == "agt-rs-web", 90,
             "the port forward to answer")
    seen = set()
    wait_for(lambda: seen.add(_get(f"http://{GATEWAY}:8080/")) or
             {"agt-rs-web", "agt-rs-pool-1"} <= seen, 90, "the balancer to answer from both")
    wait_for(lambda: _lookup(web, RECORD[0]) == RECORD[1], 60, "the DNS record")
    wait_for(lambda: "agt-rs-data" in _ssh(web, "cat /sys/block/vd*/serial"), 60,
             "its volume in the guest")
    files = cloud.instances.get("agt-rs-files")
    wait_for(lambda: "kept across" in _ssh(files, "cat /mnt/host/kept.txt"), 60,
             "the synced folder in the guest")


def test_drift_sees_a_stopped_instance_a_dead_balancer_a_missing_forward_and_apply_repairs(
        daemon, made):
    c = _cloud(daemon)
    try:
        _answering(c, made["forward"])
        assert _drift(c) == []
        # what a restart leaves, done behind nbcloud's back
        c.provider.conn.lookupByName("agt-rs-web").destroy()
        os.kill(c.provider.balancer_process("agt-rs-lb").pid(), signal.SIGKILL)
        c.provider.remove_forwards({made["forward"].name})
        wait_for(lambda: not c.provider.balancer_running("agt-rs-lb"), 10, "HAProxy gone")
        found = {(k, n): what for k, n, what in _drift(c)}
        assert set(found) == {("instance", "agt-rs-web"), ("loadbalancer", "agt-rs-lb"),
                              ("floating", made["forward"].name)}, found
        assert found[("instance", "agt-rs-web")].startswith("stopped behind nbcloud's back")
        assert found[("loadbalancer", "agt-rs-lb")].startswith("its HAProxy is not running")
        assert "forwarding rules are missing" in found[("floating", made["forward"].name)]
        plan = c.stacks.plan("agt-rs", STACK, {"httpd": HTTPD})
        assert {(a.op, a.name) for a in plan.actions} == {("update", "agt-rs-web"),
                                                          ("update", "agt-rs-lb")}, str(plan)
        c.stacks.apply("agt-rs", STACK, {"httpd": HTTPD})   # repairs what it can
        assert _drift(c) == []
        _answering(c, made["forward"])
    finally:
        c.close()


def test_host_down_then_up_brings_everything_back(daemon, made):
    place = _place(daemon)
    assert control.start_agent(place, wait=120)[-1] == "agent: nothing to restore"
    agent = supervisor.agent_pid(place.folder)
    assert agent is not None
    t0 = time.monotonic()
    down = control.down(place, stop_daemon=False)
    daemon.stop()   # what `host down` does to a daemon it started
    t1 = time.monotonic()
    print("\n".join(down))
    assert down[0] == f"stopped the host agent (pid {agent})", down
    assert {"stopped load balancer agt-rs-lb", "removed nft table ip nbcloud",
            "powered off agt-rs-web", "powered off agt-rs-pool-1",
            "powered off agt-rs-files"} <= set(down), down

    daemon.start()
    t2 = time.monotonic()
    up = control.up(place, start_daemon=False, wait=300)
    print("\n".join(up))
    print(f"host down {t1 - t0:.1f} s; host up, the agent's restore included, "
          f"{time.monotonic() - t2:.1f} s")
    # libvirtd autostarts networks once per boot, not when it restarts: `up` starts them
    assert up[0] == "made sure the nbcloud pools and network exist and are active", up
    assert up[1].startswith("started the host agent"), up
    assert {"agent: started instance agt-rs-web", "agent: started instance agt-rs-pool-1",
            "agent: started instance agt-rs-files",
            f"agent: restored port forward {made['forward'].name}",
            "agent: started load balancer agt-rs-lb"} <= set(up), up
    c = _cloud(daemon)
    try:
        for name in ("agt-rs-web", "agt-rs-pool-1", "agt-rs-files"):
            assert c.provider.state(name) == "running"
        assert c.ipools.get("agt-rs-pool").members == ["agt-rs-pool-1"]
        _answering(c, made["forward"])
        print(f"everything answering {time.monotonic() - t2:.1f} s after the daemon started")
        # the security group's filter is bound to the instance's NIC again
        bound = [b.XMLDesc() for b in c.provider.conn.listAllNWFilterBindings(0)]
        assert any("agt-rs-web" in x and "<filterref" in x for x in bound), bound
        assert _drift(c) == []

        # the agent supervises the balancer: killed, it is back within seconds
        haproxy = c.provider.balancer_process("agt-rs-lb")
        dead = haproxy.pid()
        os.kill(dead, signal.SIGKILL)
        wait_for(lambda: haproxy.pid() not in (None, dead), 30,
                 "the agent to start the balancer again")
        ops = [(op["verb"], op["name"], op["pid"], op["result"])
               for op in c.inventory.operations(20)]
        assert ("restart", "agt-rs-lb", supervisor.agent_pid(place.folder), "ok") in ops, ops
    finally:
        c.close()
        supervisor.stop(place.folder)
