"""Two separate Python processes apply different stacks (`cc-a`, `cc-b`) against one
inventory file at the same time: both succeed, the inventory holds both stacks' rows, the
operations log has every create with result ok, and nobody sees "database is locked".
The two start together (each waits at a barrier until the other is ready) and report when
their apply began and ended: the test checks that the applies did overlap."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from nbcloud.api import Cloud
from nbcloud.core.errors import NotFound
from nbcloud.inventory import Inventory
from nbcloud.services import keys

STACKS = ("cc-a", "cc-b")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent("""
    import os, sys, time
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    uri, path, stack, barrier = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    body = f'''
    volume:
      {stack}-vol: {{size: 1G}}
    instance:
      {stack}-vm: {{image: tiny, flavor: t.nano, network: [nbcloud], volume: [{stack}-vol]}}
    '''
    cloud = Cloud(uri, inventory=Inventory(path))
    open(os.path.join(barrier, stack), "w").close()      # ready; wait for the other one
    while len(os.listdir(barrier)) < 2:
        time.sleep(0.01)
    began = time.time()
    plan = cloud.stacks.apply(stack, body)
    print("applied", [(a.op, a.kind, a.name) for a in plan.actions])
    print("window", began, time.time())
    cloud.close()
""")


def _cleanup(c: Cloud) -> None:
    for stack in STACKS:
        c.stacks.destroy(stack)
        if c.provider.exists(f"{stack}-vm"):
            c.instances.delete(f"{stack}-vm")
        try:
            c.volumes.delete(f"{stack}-vol")
        except NotFound:
            pass


def test_two_processes_apply_different_stacks_at_once(cloud, tmp_path):
    path = tmp_path / "shared.sqlite"
    main = Cloud(cloud.uri, inventory=Inventory(path))
    _cleanup(main)
    keys.user_key("default")  # made once, not raced for by the two children
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, cloud.uri, str(path), stack,
                               str(barrier)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT) for stack in STACKS]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert "database is locked" not in out + err
            assert p.returncode == 0, f"child failed:\n{out}\n{err}"
            assert "applied" in out
        # the applies ran at the same time: each began before the other ended
        (a0, a1), (b0, b1) = [tuple(map(float, out.split("window ")[1].split()[:2]))
                              for out, _err in outs]
        assert a0 < b1 and b0 < a1, f"the applies did not overlap: {a0}-{a1}, {b0}-{b1}"
        rows = {(r.stack, r.kind, r.name) for r in main.inventory.resources(main.uri)}
        for stack in STACKS:
            assert (stack, "volume", f"{stack}-vol") in rows
            assert (stack, "instance", f"{stack}-vm") in rows
            assert main.provider.state(f"{stack}-vm") == "running"
        ops = [o for o in main.inventory.operations(1000) if o["name"].startswith("cc-")]
        creates = {(o["kind"], o["name"]): o["result"] for o in ops if o["verb"] == "create"}
        assert creates == {(k, f"{s}-{n}"): "ok" for s in STACKS
                           for k, n in (("volume", "vol"), ("instance", "vm"))}
        assert not [o for o in ops if o["result"] != "ok"]
        for stack in STACKS:
            plan = main.stacks.destroy(stack)
            assert [(a.op, a.kind) for a in plan.actions] == [("delete", "instance"),
                                                                ("delete", "volume")]
        assert not any(main.provider.exists(f"{s}-vm") for s in STACKS)
        assert not [r for r in main.inventory.resources(main.uri) if r.stack in STACKS]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        _cleanup(main)
        main.close()
