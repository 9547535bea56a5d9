"""Load balancer on the real daemon: three tiny guests serve their hostname with busybox
httpd; a supervised HAProxy on the network's gateway spreads requests over them, stops
sending to a member whose server is killed and sends again when it is back."""
from __future__ import annotations

import collections
import http.client
import os
import signal
import subprocess
import urllib.request

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import CloudError, InvalidSpec

HTTPD = "httpd -p 80 -h /srv/www"
USER_DATA = f"""#!/bin/sh
mkdir -p /srv/www/cgi-bin
hostname > /srv/www/index.html
printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' \
    > /srv/www/cgi-bin/addr
chmod 755 /srv/www/cgi-bin/addr
{HTTPD}
"""


@pytest.fixture(scope="module")
def members(cloud):
    for i in (1, 2, 3):
        if cloud.provider.exists(f"lb-{i}"):
            cloud.instances.delete(f"lb-{i}")
    insts = cloud.instances.create("lb", image="tiny", flavor="t.nano", network="nbcloud",
                                   user_data=USER_DATA, count=3)
    for inst in insts:  # user-data runs after SSH is up: wait for the server itself
        wait_for(lambda inst=inst: _get(f"http://{inst.ip}/") == inst.name, 60,
                 f"httpd on {inst.name}")
    yield insts
    for inst in insts:
        if cloud.provider.exists(inst.name):
            cloud.instances.delete(inst.name)


@pytest.fixture(scope="module")
def balancer(cloud, members):
    if any(lb.name == "lb-web" for lb in cloud.lbs.list()):
        cloud.lbs.delete("lb-web")
    lb = cloud.lbs.create("lb-web", "nbcloud", 80, members=["lb-*"])
    yield lb
    if any(x.name == "lb-web" for x in cloud.lbs.list()):
        cloud.lbs.delete("lb-web")


def _get(url: str, timeout: float = 3.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode().strip()
    except OSError:
        return ""


def _spread(lb, n: int) -> collections.Counter:
    return collections.Counter(_get(f"http://{lb.address}/") for _ in range(n))


def test_hundred_requests_spread_over_all_three(cloud, balancer, members):
    assert balancer.members == ["lb-1", "lb-2", "lb-3"]
    wait_for(lambda: set(balancer.health().values()) == {"UP"}, 15, "three members UP")
    seen = _spread(balancer, 100)
    assert set(seen) == {"lb-1", "lb-2", "lb-3"}, seen
    # round-robin over healthy members: about a third each
    assert min(seen.values()) >= 25, seen


def test_dead_member_is_taken_out_and_put_back(cloud, balancer, members):
    victim = members[1]
    victim.ssh("killall httpd")
    wait_for(lambda: balancer.health().get(victim.name, "").startswith("DOWN"), 15,
             f"{victim.name} marked DOWN by the health checks")
    seen = _spread(balancer, 30)
    assert victim.name not in seen and "" not in seen, seen
    assert set(seen) == {"lb-1", "lb-3"}, seen
    victim.ssh(HTTPD)
    wait_for(lambda: balancer.health().get(victim.name) == "UP", 15,
             f"{victim.name} back UP")
    seen = _spread(balancer, 30)
    assert seen[victim.name] >= 5, seen


def test_leastconn_and_member_remove_regenerate_the_config(cloud, members):
    lb = cloud.lbs.create("lb-lc", "nbcloud", 8081, members=["lb-1", "lb-2"],
                          algorithm="leastconn", member_port=80)
    try:
        cfg = cloud.provider.balancer_process("lb-lc").cfg.read_text()
        assert "balance leastconn" in cfg
        wait_for(lambda: len(lb.health()) == 2 and set(lb.health().values()) == {"UP"},
                 15, "two members UP")
        assert set(_spread(lb, 20)) == {"lb-1", "lb-2"}
        cloud.lbs.remove_members("lb-lc", ["lb-2"])
        assert set(_spread(lb, 10)) == {"lb-1"}
        cloud.lbs.add_members("lb-lc", ["lb-3"])
        wait_for(lambda: lb.health().get("lb-3") == "UP", 15, "lb-3 UP")
        assert set(_spread(lb, 10)) == {"lb-1", "lb-3"}
    finally:
        cloud.lbs.delete("lb-lc")


def test_killed_haproxy_is_restarted_when_touched(cloud, balancer):
    proc = cloud.provider.balancer_process("lb-web")
    os.kill(proc.pid(), signal.SIGKILL)
    wait_for(lambda: not proc.alive(), 5, "haproxy gone")
    assert _get(f"http://{balancer.address}/", timeout=1) == ""
    cloud.lbs.get("lb-web")  # touching the balancer restarts its process
    assert proc.alive()
    wait_for(lambda: _get(f"http://{balancer.address}/") in {"lb-1", "lb-2", "lb-3"}, 10,
             "the balancer answering again")


def test_member_not_on_the_network_is_refused_and_nothing_changes(cloud, members):
    net = "lb-other"
    if net in cloud.provider.network_names():
        cloud.networks.delete(net)
    cloud.networks.create(net, "10.93.0.0/24", "isolated")
    try:
        before = len(cloud.inventory.operations(1000))
        with pytest.raises(InvalidSpec, match="not on network 'lb-other'"):
            cloud.lbs.create("lb-bad", net, 80, members=["lb-1"])
        with pytest.raises(InvalidSpec, match="matches no instance"):
            cloud.lbs.create("lb-bad", "nbcloud", 8082, members=["nope-*"])
        with pytest.raises(CloudError, match="taken by load balancer 'lb-web'"):
            cloud.lbs.create("lb-bad", "nbcloud", 80)
        assert not any(lb.name == "lb-bad" for lb in cloud.lbs.list())
        assert not cloud.provider.balancer_process("lb-bad").cfg.exists()
        assert len(cloud.inventory.operations(1000)) == before
    finally:
        cloud.networks.delete(net)


def test_delete_stops_the_process(cloud, members):
    lb = cloud.lbs.create("lb-del", "nbcloud", 8083, members=["lb-3"],
                          member_port=80)
    address, proc = lb.address, cloud.provider.balancer_process("lb-del")
    pid = proc.pid()
    assert pid
    wait_for(lambda: _get(f"http://{address}/") == "lb-3", 10, "lb-del answering")
    cloud.lbs.delete("lb-del")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", 5,
             "haproxy stopped")
    assert _get(f"http://{address}/", 1) == ""
    assert not proc.cfg.exists() and not proc.pidfile.exists()


CLIENT = "10.250.0.1"   # a client address outside the guests' network, on loopback


@pytest.fixture
def outside_client():
    """A host-side address that is not the bridge's (as a floating address's client
    would be), on loopback of this test namespace; removed afterwards."""
    subprocess.run(["ip", "addr", "add", f"{CLIENT}/32", "dev", "lo"], check=True)
    yield CLIENT
    subprocess.run(["ip", "addr", "del", f"{CLIENT}/32", "dev", "lo"], check=False)


def _remote_addr(address: str, source: str) -> str:
    """What the member's CGI sees as REMOTE_ADDR for a request from `source`."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/cgi-bin/addr")
        text = conn.getresponse().read().decode().strip()
        return text.removeprefix("[::ffff:").removesuffix("]")   # busybox's IPv4-mapped form
    except OSError:
        return ""
    finally:
        conn.close()


def test_keep_client_address_shows_the_member_the_real_client(cloud, members,
                                                              outside_client):
    plain = cloud.lbs.create("lb-plain", "nbcloud", 8084, members=["lb-1"], member_port=80)
    kept = cloud.lbs.create("lb-kept", "nbcloud", 8085, members=["lb-1"], member_port=80,
                            keep_client_address=True)
    try:
        assert "usesrc clientip" in cloud.provider.balancer_process("lb-kept").cfg.read_text()
        gateway = plain.address.split(":")[0]
        # without: the member sees the balancer's address; with: the client's own
        assert wait_for(lambda: _remote_addr(plain.address, outside_client), 10,
                        "lb-plain answering") == gateway
        assert wait_for(lambda: _remote_addr(kept.address, outside_client), 10,
                        "lb-kept answering") == outside_client
    finally:
        cloud.lbs.delete("lb-plain")
        cloud.lbs.delete("lb-kept")


def test_stack_loadbalancer_section_applies_and_destroys(cloud, members):
    body = """
loadbalancer:
  lb-stacked: {network: nbcloud, port: 8086, member_port: 80, members: [lb-2, lb-3]}
"""
    plan = cloud.stacks.apply("lb-stack", body)
    try:
        assert [(a.op, a.kind) for a in plan.actions] == [("create", "loadbalancer")]
        lb = cloud.lbs.get("lb-stacked")
        wait_for(lambda: set(lb.health().values()) == {"UP"} and len(lb.health()) == 2, 15,
                 "two members UP")
        assert set(_spread(lb, 20)) == {"lb-2", "lb-3"}
        assert not cloud.stacks.plan("lb-stack", body)       # converged
    finally:
        cloud.stacks.destroy("lb-stack")
    assert not any(x.name == "lb-stacked" for x in cloud.lbs.list())
    assert not cloud.provider.balancer_process("lb-stacked").alive()


def test_failover_record_follows_the_first_healthy_member(cloud, members):
    a, b, client = members
    cloud.dns.add("nbcloud", "lb-fo", failover=f"{a.ip},{b.ip}", port=80)
    try:
        lookup = "nslookup -type=a lb-fo 2>/dev/null | sed -n '/^Name:/,$p'"
        assert wait_for(lambda: a.ip in client.ssh(lookup, check=False), 20,
                        "lb-fo -> the first member")
        a.ssh("killall httpd")
        wait_for(lambda: b.ip in client.ssh(lookup, check=False), 20,
                 "lb-fo re-pointed at the second member")
        a.ssh(HTTPD)
        wait_for(lambda: a.ip in client.ssh(lookup, check=False), 20,
                 "lb-fo back on the first member")
        moves = [op["detail"] for op in cloud.inventory.operations(100)
                 if op["verb"] == "failover" and op["name"] == "lb-fo.nbcloud"]
        assert moves[:2] == [f"lb-fo -> {a.ip}", f"lb-fo -> {b.ip}"]
    finally:
        cloud.dns.delete("nbcloud", "lb-fo")
