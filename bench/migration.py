"""Live migration and placement over several hosts, each beside its floor, in one run:

1. a tiny guest (128 MiB, TCG) moved live between two libvirt daemons of the hosts tier's
   fabric (tests/hosts/fabric.py) by nbcloud (`cloud.hosts.migrate`: the disks made on
   the destination, its filters copied, then libvirt's peer-to-peer migration with the
   local disks copied) against `virsh migrate --live --p2p --copy-storage-inc` of the
   same guest with the same flags, its disks made on the destination beforehand and not
   timed: the floor. Rounds alternate who goes first. Time is the call's wall time;
   downtime is libvirt's (the completed job's statistics, on the destination).
2. placement of 1,000 instances on test:/// hosts through `cloud.hosts.place` (the
   hosts' capacity read from libvirt and one BEGIN IMMEDIATE claim per instance)
   against core/placement.place alone over loads kept in memory.

Run it through the tier's script, which makes the namespaces and a private ~/.ssh:
    scripts/hosts-tier.sh --bench [--rounds 3] [--placements 1000]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import save  # noqa: E402

NAME = "mh-bench"
NODE = """<node><cpu><mhz>2000</mhz><model>x86_64</model><active>{n}</active>
<total>{n}</total><nodes>1</nodes><sockets>1</sockets><cores>{n}</cores><threads>1</threads>
</cpu><memory>{kib}</memory></node>"""


def virsh_migrate(cloud, source: str, to: str) -> dict:
    """`virsh migrate` of NAME from host `source` to `to`, nbcloud's flags; the
    destination's disks made first (not timed), the source's removed after."""
    import libvirt
    p = cloud.provider
    src, dst = p._host(source), p._host(to)
    root = ET.fromstring(src._lookup(NAME).XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
    disks = p._disk_moves(src, NAME, root)
    p._copy_filters(src, dst, root)
    for d in disks:
        p._make_on_destination(src, dst, d)
    argv = ["virsh", "-q", "-c", p.host_uri(source), "migrate", "--live", "--p2p",
            "--persistent", "--undefinesource", "--copy-storage-inc", "--auto-converge",
            "--abort-on-error", "--migrate-disks",
            ",".join(d.target for d in disks if not d.readonly),
            "--migrateuri", f"tcp://{p.address(to)}", NAME, p.peer_uri(to)]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    for d in disks:
        src.delete_volume(d.pool, d.volume)
    p._where[NAME] = to
    stats = dst.conn.lookupByName(NAME).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    return {"seconds": seconds, "downtime_ms": stats.get("downtime")}


def nbcloud_migrate(cloud, to: str) -> dict:
    start = time.perf_counter()
    done = cloud.hosts.migrate(NAME, to)
    return {"seconds": time.perf_counter() - start, "downtime_ms": done.get("downtime_ms")}


def migrations(rounds: int, root: Path) -> dict:
    from tests.hosts.fabric import Fabric, open_cloud
    fabric = Fabric(root / "fabric", count=2)
    fabric.up()
    cloud = None
    try:
        home, other = fabric.hosts
        cloud = open_cloud(fabric, root / "inv.sqlite")
        inst = cloud.instances.create(NAME, flavor="t.nano", host=home.name)
        runs: dict[str, list[dict]] = {"nbcloud": [], "virsh": []}
        for r in range(rounds):
            for tool in (("nbcloud", "virsh") if r % 2 == 0 else ("virsh", "nbcloud")):
                here = cloud.provider.host_of(NAME)
                to = other.name if here == home.name else home.name
                run = nbcloud_migrate(cloud, to) if tool == "nbcloud" else \
                    virsh_migrate(cloud, here, to)
                assert inst.ssh("hostname").strip() == NAME      # it runs, and answers
                runs[tool].append(run)
                print(f"  round {r + 1} {tool:8} {here} -> {to}: {run['seconds']:.2f} s, "
                      f"downtime {run['downtime_ms']} ms", flush=True)
        cloud.instances.delete(NAME)
        return runs
    finally:
        if cloud is not None:
            cloud.close()
        fabric.down()


def placements(count: int, root: Path) -> dict:
    from nbcloud.api import Cloud
    from nbcloud.core.placement import HostLoad, place
    from nbcloud.inventory import Inventory
    cloud = Cloud("test:///default", inventory=Inventory(root / "place.sqlite"))
    try:
        cloud.hosts.add("home", "test:///default", cpu_ratio=0.05)     # takes nothing
        for i in range(1, 5):
            node = root / f"node{i}.xml"
            node.write_text(NODE.format(n=16, kib=64 << 20))
            cloud.hosts.add(f"h{i}", f"test://{node}", cpu_ratio=16)
        nano = cloud.provider.flavor("t.nano")
        start = time.perf_counter()
        where = [cloud.hosts.place(f"p-{i}", nano) for i in range(count)]
        ours = time.perf_counter() - start
        spread = {h: where.count(h) for h in sorted(set(where))}
    finally:
        cloud.close()
    loads = {f"h{i}": HostLoad(f"h{i}", 16, 64 << 30, cpu_ratio=16) for i in range(1, 5)}
    start = time.perf_counter()
    for i in range(count):
        h = place(f"p-{i}", nano.vcpus, nano.memory, loads.values())
        loads[h] = dataclasses.replace(loads[h], used_vcpus=loads[h].used_vcpus + nano.vcpus,
                                       used_memory=loads[h].used_memory + nano.memory)
    floor = time.perf_counter() - start
    return {"count": count, "seconds": ours, "algorithm_seconds": floor, "spread": spread}


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--placements", type=int, default=1000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mh-bench-"))
    os.environ["NBCLOUD_HOME"] = str(root / "home")
    print(f"live migration of a tiny guest between two hosts, {args.rounds} rounds each:")
    runs = migrations(args.rounds, root)
    print(f"placement of {args.placements} instances on four test:/// hosts:")
    placed = placements(args.placements, root)
    ours_s, floor_s = median(runs["nbcloud"], "seconds"), median(runs["virsh"], "seconds")
    ours_d, floor_d = median(runs["nbcloud"], "downtime_ms"), median(runs["virsh"],
                                                                       "downtime_ms")
    per, per_floor = (placed["seconds"] / placed["count"] * 1000,
                      placed["algorithm_seconds"] / placed["count"] * 1000)
    print(f"\n  {'':34} {'nbcloud':>10} {'floor':>10} {'ratio':>7}")
    print(f"  {'migration time, median (s)':34} {ours_s:10.2f} {floor_s:10.2f} "
          f"{ours_s / floor_s:7.2f}   floor: virsh migrate --live --p2p")
    if ours_d is not None and floor_d is not None:
        print(f"  {'downtime, median (ms)':34} {ours_d:10.0f} {floor_d:10.0f} "
              f"{ours_d / max(floor_d, 1):7.2f}")
    print(f"  {'placement, per instance (ms)':34} {per:10.3f} {per_floor:10.4f} "
          f"{per / per_floor:7.0f}   floor: the algorithm alone")
    print(f"  {placed['count']} placed in {placed['seconds']:.2f} s, spread {placed['spread']}")
    result = {"machine": platform.node(), "cores": os.cpu_count(),
              "load": round(os.getloadavg()[0], 2), "rounds": args.rounds,
              "migration": {"nbcloud": runs["nbcloud"], "virsh": runs["virsh"],
                            "median_s": {"nbcloud": round(ours_s, 3),
                                         "virsh": round(floor_s, 3)},
                            "median_downtime_ms": {"nbcloud": ours_d, "virsh": floor_d}},
              "placement": {**placed, "per_instance_ms": round(per, 4),
                            "algorithm_per_instance_ms": round(per_floor, 5)}}
    print(f"saved {save('migration', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
