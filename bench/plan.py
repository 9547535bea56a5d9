"""`plan` of an unchanged 200-resource stack, and an `ls` over 10,000 inventory rows, each
beside the raw libvirt / sqlite3 calls underneath.

Runs on libvirt's in-process test driver: the stack's domains are defined directly with
nbcloud's metadata (as `instance create` would leave them), so no guest boots. Targets
(issue 4): plan <= 300 ms, ls <= 100 ms.

    .venv/bin/python bench/plan.py [--runs 7]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import save  # noqa: E402

import libvirt  # noqa: E402
from timing import median_ms  # noqa: E402  (bench/timing.py)

from nbcloud.api import Cloud  # noqa: E402
from nbcloud.inventory import Inventory  # noqa: E402
from nbcloud.plan.compare import user_data_digest  # noqa: E402
from nbcloud.providers.libvirt import xml as lx  # noqa: E402

URI = "test:///default"
STACK, NET, INSTANCES = "bench", "bench-net", 199      # + the network = 200 resources
LS_ROWS = 10_000
# one entry per instance: a `count` stops at 64
BODY = f"network:\n  {NET}: {{cidr: 10.99.0.0/16, mode: isolated}}\ninstance:\n" + "".join(
    f"  b{i}: {{flavor: t.nano, network: [{NET}]}}\n" for i in range(1, INSTANCES + 1))


def converged_stack(cloud: Cloud) -> None:
    """The network, and 199 marked domains recorded in the inventory, as `apply` leaves
    them."""
    cloud.networks.create(NET, "10.99.0.0/16", "isolated", stack=STACK)
    conn = cloud.provider.conn
    for i in range(1, INSTANCES + 1):
        name = f"b{i}"
        meta = {"kind": "instance", "stack": STACK, "image": "tiny", "flavor": "t.nano",
                "networks": NET, "volumes": "", "ip": f"10.99.{i // 250}.{i % 250 + 2}",
                "key": "default"}
        uuid = conn.defineXML(lx.domain_xml(lx.DomainDef(
            name=name, vcpus=1, memory=128 << 20, domain_type="test",
            boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(), metadata=meta))
        ).UUIDString()
        cloud.inventory.put(cloud.uri, "instance", name, state="running", uuid=uuid,
                            stack=STACK, spec={"image": "tiny", "flavor": "t.nano",
                                               "networks": [NET], "volumes": [],
                                               "user_data": user_data_digest(None)})


def raw_live(conn: libvirt.virConnect) -> None:
    """What `read_live` asks libvirt, without nbcloud: one listing per kind and the XML of
    each object."""
    for dom in conn.listAllDomains(0):
        dom.XMLDesc(0)
    for net in conn.listAllNetworks(0):
        net.XMLDesc(0)
    for pool in conn.listAllStoragePools(0):
        for vol in pool.listAllVolumes(0):
            vol.info()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nbcloud-bench-"))

    cloud = Cloud(URI, inventory=Inventory(tmp / "plan.sqlite"))
    converged_stack(cloud)
    plan = cloud.stacks.plan(STACK, BODY)
    assert plan.actions == [], str(plan)   # unchanged: the plan must be empty
    plan_ms = median_ms(lambda: cloud.stacks.plan(STACK, BODY), args.runs)
    raw_plan_ms = median_ms(lambda: raw_live(cloud.provider.conn), args.runs)
    cloud.close()

    inv = Inventory(tmp / "ls.sqlite")
    with inv._write() as db:   # bulk load; `put` one by one would time the fixture
        now = time.time()
        db.executemany(
            "INSERT INTO resources (uri, kind, name, stack, spec, uuid, state, created,"
            " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(URI, ("instance", "volume", "network")[i % 3], f"r{i}", f"s{i % 50}",
              json.dumps({"image": "tiny", "flavor": "t.nano", "networks": ["lab"]}),
              None, "running", now, now) for i in range(LS_ROWS)])
    assert len(inv.resources(URI)) == LS_ROWS
    ls_ms = median_ms(lambda: inv.resources(URI), args.runs)
    raw = sqlite3.connect(tmp / "ls.sqlite")
    raw_ls_ms = median_ms(lambda: raw.execute(
        "SELECT * FROM resources WHERE uri=? ORDER BY kind, name", (URI,)).fetchall(),
        args.runs)
    raw.close()
    inv.close()
    shutil.rmtree(tmp)

    rows = [
        {"what": f"plan, unchanged stack of {INSTANCES + 1} resources", "nbcloud_ms": plan_ms,
         "raw_ms": raw_plan_ms, "raw": "listAllDomains + XMLDesc each, networks, volumes",
         "target_ms": 300},
        {"what": f"ls, {LS_ROWS} inventory rows", "nbcloud_ms": ls_ms, "raw_ms": raw_ls_ms,
         "raw": "sqlite3 SELECT of the same rows", "target_ms": 100}]
    for r in rows:
        r["ratio"] = round(r["nbcloud_ms"] / r["raw_ms"], 1) if r["raw_ms"] else None
        r["met"] = r["nbcloud_ms"] <= r["target_ms"]
    result = {"benchmark": "plan and ls on test:///default", "runs": args.runs,
              "statistic": "median", "cores": os.cpu_count(),
              "machine": f"{platform.node()} {platform.release()}",
              "python": platform.python_version(), "libvirt": libvirt.getVersion(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    save("plan", result)
    print(f"median of {args.runs} runs, test:///default, {os.cpu_count()} cores")
    print(f"  {'':<42} {'nbcloud ms':>10} {'raw ms':>8} {'ratio':>6} {'target':>7}")
    for r in rows:
        print(f"  {r['what']:<42} {r['nbcloud_ms']:>10} {r['raw_ms']:>8} {r['ratio']:>6} "
              f"{'<=' + str(r['target_ms']):>7} {'met' if r['met'] else 'MISSED'}")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
