"""A host whose daemon dies (kill -9): what nbcloud recorded there is shown lost, not
stopped or missing; an instance pool's member there is made again on a host that answers;
when the daemon is back, the copy it kept is removed, so one name never runs twice."""
from __future__ import annotations

import time

from nbcloud.core.errors import HostDown
from tests.hosts.conftest import domains_on

POOL = "mh-pool"


def test_a_dead_host_loses_its_instances_and_a_pool_makes_its_member_again(cloud, fabric):
    pool = cloud.ipools.create(POOL, size=3, flavor="t.nano")
    try:
        where = {m: cloud.provider.host_of(m) for m in pool.members}
        assert sorted(where.values()) == ["mh-h1", "mh-h2", "mh-h3"], where
        victim = next(m for m, h in where.items() if h == "mh-h3")
        fabric.hosts[2].kill_daemon()
        # seen without the hosts' service acting on it: lost, on its host
        assert cloud.hosts.lost() == {victim: "mh-h3"}
        rows = {r[1]: r for r in cloud.instances.table().rows}
        assert rows[victim][:3] == ["mh-h3", victim, "lost"]
        try:
            cloud.provider.state(victim)
            raise AssertionError("a call about an instance of a dead host answered")
        except HostDown as exc:
            assert "host mh-h3 " in str(exc)
        # the service's look at the hosts: the pool makes its member again elsewhere
        down = next(h for h in cloud.hosts.infos() if h.name == "mh-h3")
        assert down.state == "down"
        cloud.ipools.healing.join(300)
        moved = cloud.provider.host_of(victim)
        assert moved in ("mh-h1", "mh-h2")
        assert cloud.instances.get(victim).ssh("hostname").strip() == victim
        assert cloud.ctx.inventory.get("instance", victim).spec["host"] == moved
        assert sorted(cloud.ipools.get(POOL).members) == sorted(where)
        op = next(o for o in cloud.ctx.inventory.operations(20) if o["verb"] == "heal")
        assert op["result"] == "ok" and f"{victim} (was on mh-h3)" in op["detail"]
        # the daemon is back: its copy of the member (QEMU ran on) is removed
        fabric.hosts[2].start(ssh=False)
        assert victim in domains_on(fabric, 3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if next(h for h in cloud.hosts.infos() if h.name == "mh-h3").up:
                break
            time.sleep(1)
        assert victim not in domains_on(fabric, 3)
        assert cloud.provider.host_of(victim) == moved
    finally:
        cloud.ipools.delete(POOL)
    assert not [n for i in (1, 2, 3) for n in domains_on(fabric, i) if n.startswith(POOL)]
