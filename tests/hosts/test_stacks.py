"""Stacks over three hosts: `host:` pins an instance, a changed pin is a live migration in
the plan, and an instance lost with its host is planned and made again elsewhere (its
host's copy removed when the host is back, so one name never runs twice)."""
from __future__ import annotations

import time

from tests.hosts.conftest import domains_on

STACK = "mh-st"
BODY = """
instance:
  mh-st-a: {{flavor: t.nano, host: {a}}}
  mh-st-b: {{flavor: t.nano{b}}}
"""


def test_a_stack_pins_moves_and_repairs_across_hosts(cloud, fabric):
    stacks = cloud.stacks
    try:
        stacks.apply(STACK, BODY.format(a="mh-h2", b=", host: mh-h3"))
        where = {n: cloud.provider.host_of(n) for n in ("mh-st-a", "mh-st-b")}
        assert where == {"mh-st-a": "mh-h2", "mh-st-b": "mh-h3"}
        # the stack's records keep where placement put them
        assert cloud.ctx.inventory.get("instance", "mh-st-b").spec["host"] == "mh-h3"

        # a new pin: the plan moves it live, and it keeps answering from its new host
        body = BODY.format(a="mh-h1", b=", host: mh-h3")
        plan = stacks.plan(STACK, body)
        assert [(a.op, a.name, a.changes) for a in plan.actions] == [
            ("update", "mh-st-a", ("host mh-h2 -> mh-h1 (a live migration)",))]
        boot_id = cloud.instances.get("mh-st-a").ssh("cat /proc/sys/kernel/random/boot_id")
        stacks.apply(STACK, body)
        assert cloud.provider.host_of("mh-st-a") == "mh-h1"
        assert "mh-st-a" in domains_on(fabric, 1) and "mh-st-a" not in domains_on(fabric, 2)
        # the same boot: moved while running, not made again
        assert cloud.instances.get("mh-st-a").ssh(
            "cat /proc/sys/kernel/random/boot_id") == boot_id
        assert not stacks.plan(STACK, body)

        # mh-h3 dies: the plan says mh-st-b is lost and makes it again elsewhere
        fabric.hosts[2].kill_daemon()
        loose = BODY.format(a="mh-h1", b="")
        plan = stacks.plan(STACK, loose)
        assert plan.drift == ["instance mh-st-b is lost with host mh-h3, which is down"]
        assert [(a.op, a.name) for a in plan.actions] == [("create", "mh-st-b")]
        stacks.apply(STACK, loose)
        moved = cloud.provider.host_of("mh-st-b")
        assert moved in ("mh-h1", "mh-h2")
        assert cloud.instances.get("mh-st-b").ssh("hostname").strip() == "mh-st-b"
        assert cloud.ctx.inventory.get("instance", "mh-st-b").spec["host"] == moved
        assert not stacks.plan(STACK, loose)
    finally:
        if fabric.hosts[2].proc is None:
            fabric.hosts[2].start(ssh=False)
            deadline = time.monotonic() + 60   # the hosts' service sees it back, and fences
            while not next(h for h in cloud.hosts.infos() if h.name == "mh-h3").up:
                assert time.monotonic() < deadline, "mh-h3 was not seen again in 60 s"
                time.sleep(1)
        # back: the copy it kept of mh-st-b is removed as the host is seen again
        assert "mh-st-b" not in domains_on(fabric, 3)
        stacks.destroy(STACK)
    assert not [n for i in (1, 2, 3) for n in domains_on(fabric, i) if n.startswith(STACK)]
