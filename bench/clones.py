"""Warm clones against cold boots (and the floor), side by side in one run; never pass/fail.

1. Create -> SSH-ready of one tiny instance: a warm clone (the default, with a fresh base),
   a cold boot (`boot="cold"`), and the floor (the cold instance's own XML through `virsh
   create`, as bench/boot.py), rounds interleaved with the order rotating. A clone's
   operations-log line says how long its restore and its identity took.
2. `--count N` (1, 10, 30): wall time until all N answer `true` over SSH with the pinned
   key, clones then cold boots; then, the N still running, host memory per instance (VmRSS
   and, from smaps_rollup, PSS of each QEMU; for clones also the base's RAM file on tmpfs,
   shared by all of them), the CPU seconds each QEMU used, libvirtd's (with the programs
   it ran: the network filters' ebtables) and the whole machine's per instance during the
   create.
The machine is shared: each figure carries the 1-minute load average beside it.

    ip netns exec nbcloud-test .venv/bin/python bench/clones.py [--rounds 5] [--counts 1 10 30]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boot  # noqa: E402
import machine  # noqa: E402
from timing import save, summary  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402

MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of `pid`; with `children`, also of the children it has reaped (for
    libvirtd: the ebtables/iptables programs that instantiate network filters)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK   # minus idle and iowait


def memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of process `pid` in MiB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss / 1024, pss / 1024


def libvirtd_pid() -> int:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "libvirtd":
                net = os.readlink(proc / "ns/net")
                if net == os.readlink("/proc/self/ns/net"):
                    return int(proc.name)
        except OSError:
            continue
    return 0


def clone_detail(cloud, name: str) -> dict:
    """How the create of `name` came up, from the operations log."""
    for op in cloud.inventory.operations(400):
        if op["verb"] == "create" and op["name"] == name and op["result"] == "ok":
            detail = op["detail"]
            nums = [float(w) for w in detail.replace("(", " ").split() if
                    w.replace(".", "", 1).isdigit()]
            return {"boot": detail.split()[0], "restore": nums[0] if len(nums) > 1 else None,
                    "identity": nums[1] if len(nums) > 1 else None}
    return {"boot": "?"}


def one(cloud, name: str, flavor: str, boot_how: str) -> dict:
    """One create -> `true` over SSH; the QEMU's CPU seconds, and for a clone its parts."""
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    start = time.perf_counter()
    inst = cloud.instances.create(name, flavor=flavor, boot=boot_how)
    inst.ssh("true")
    ready = time.perf_counter() - start
    row = {"ready": round(ready, 3), "qemu_cpu": round(cpu_seconds(qemu_pid(name)), 2),
           "load1": load1(), **clone_detail(cloud, name)}
    inst.delete()
    return row


def single(cloud, flavor: str, rounds: int) -> dict:
    xml_path, floor_meta = boot.prepare_floor(cloud, "bc-floor", flavor)
    rows: dict[str, list] = {"clone": [], "cold": [], "floor": []}
    try:
        one(cloud, "bc-one", flavor, "auto")                # warm-up, not counted
        for i in range(rounds):
            runs = [("clone", lambda: one(cloud, "bc-one", flavor, "auto")),
                    ("cold", lambda: one(cloud, "bc-one", flavor, "cold")),
                    ("floor", lambda: {"ready": boot.floor_round(xml_path, floor_meta,
                                                                 "bc-floor"),
                                       "load1": load1()})]
            for kind, run in runs[i % 3:] + runs[:i % 3]:
                rows[kind].append(run())
    finally:
        boot.subprocess.run(["virsh", "-q", "-c", "qemu:///system", "destroy", "bc-floor"],
                            capture_output=True)
        boot.subprocess.run(["virsh", "-q", "-c", "qemu:///system", "define", xml_path],
                            capture_output=True)
        if cloud.provider.exists("bc-floor"):
            cloud.instances.delete("bc-floor")
        os.unlink(xml_path)
    wrong = [r for r in rows["clone"] if r["boot"] != "cloned"]
    out = {}
    for kind, got in rows.items():
        out[kind] = {**summary([r["ready"] for r in got]),
                     "load1": [r["load1"] for r in got],
                     **({"qemu_cpu": statistics.median(r["qemu_cpu"] for r in got)}
                        if "qemu_cpu" in got[0] else {})}
    parts = [r for r in rows["clone"] if r.get("restore") is not None]
    if parts:
        out["clone"]["restore"] = statistics.median(r["restore"] for r in parts)
        out["clone"]["identity"] = statistics.median(r["identity"] for r in parts)
    out["clone"]["not_cloned"] = len(wrong)
    return out


def count(cloud, flavor: str, n: int, boot_how: str, base_ram: Path | None) -> dict:
    name = f"bc-{boot_how[:2]}{n}"
    libvirtd = libvirtd_pid()
    lv_before, load_before = cpu_seconds(libvirtd, True) if libvirtd else 0.0, load1()
    busy_before = machine_busy()
    start = time.perf_counter()
    made = cloud.instances.create(name, flavor=flavor, count=n, boot=boot_how)
    made = made if isinstance(made, list) else [made]
    for inst in made:
        inst.ssh("true")
    wall = time.perf_counter() - start
    lv_cpu = (cpu_seconds(libvirtd, True) - lv_before) if libvirtd else None
    busy = machine_busy() - busy_before
    load_after = load1()
    time.sleep(5)          # settled: user-data, DHCP, the first page faults are done
    pids = [qemu_pid(i.name) for i in made]
    mem = [memory(p) for p in pids]
    boots = [i.boot.split()[0] for i in made]
    row = {"n": n, "kind": "clone" if boot_how == "auto" else "cold", "wall": round(wall, 2),
           "load1_before": load_before, "load1_after": load_after,
           "rss": round(statistics.mean(m[0] for m in mem), 1),
           "pss": round(statistics.mean(m[1] for m in mem), 1),
           "qemu_cpu": round(statistics.mean(cpu_seconds(p) for p in pids), 2),
           "libvirtd_cpu": round(lv_cpu / n, 2) if lv_cpu is not None else None,
           "machine_cpu": round(busy / n, 2),     # every process's, per instance
           "cloned": boots.count("cloned")}
    if base_ram is not None and boot_how == "auto" and base_ram.exists():
        ram = base_ram.stat().st_blocks * 512 / MiB
        row["base_ram"] = round(ram, 1)
        row["pss_with_base"] = round(row["pss"] + ram / n, 1)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: i.delete(), made))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--flavor", default="m.nano",
                    help="m.nano (as the earlier cold figures): no CPU cap after SSH")
    args = ap.parse_args()
    cloud = Cloud("qemu:///system")
    cloud.build_tiny()
    accel = cloud.accelerator()["accelerator"]
    for leftover in sorted(cloud.provider.managed()):
        if leftover.startswith("bc-"):
            cloud.instances.delete(leftover)
    t0 = time.perf_counter()
    made = cloud.warm("tiny", args.flavor)
    base = {"what": made, "seconds": round(time.perf_counter() - t0, 2), "load1": load1()}
    record = Path(cloud.provider.paths["warm"]) / \
        f"tiny-1c-{cloud.provider.flavor(args.flavor).memory >> 20}m.json"
    base_ram = Path(json.loads(record.read_text())["ram"]) if record.exists() else None
    result = {"benchmark": "warm clones vs cold boots, tiny image", "accelerator": accel,
              "flavor": args.flavor, "host": machine.describe(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "base": base,
              "single": single(cloud, args.flavor, args.rounds), "rows": []}
    for n in args.counts:
        for boot_how in ("auto", "cold"):
            result["rows"].append(count(cloud, args.flavor, n, boot_how, base_ram))
            save("clones", result)
    result["host_after"] = machine.describe()
    save("clones", result)
    print(f"warm clones vs cold, tiny {args.flavor}, {accel}, {result['date']}; base: "
          f"{base['what']} ({base['seconds']} s)")
    print(f"  {'create -> SSH':14} {'median':>7} {'min':>6} {'max':>6}  load1")
    for kind, s in result["single"].items():
        print(f"  {kind:14} {s['median']:7.2f} {s['min']:6.2f} {s['max']:6.2f}  "
              f"{min(s['load1'])}-{max(s['load1'])}")
    print(f"  {'N':>3} {'kind':6} {'wall s':>7} {'RSS':>6} {'PSS':>6} {'+base':>6} "
          f"{'QEMU cpu':>8} {'libvirtd':>8} {'machine':>8}  load1")
    for r in result["rows"]:
        print(f"  {r['n']:>3} {r['kind']:6} {r['wall']:7.2f} {r['rss']:6.1f} {r['pss']:6.1f} "
              f"{r.get('pss_with_base', '-'):>6} {r['qemu_cpu']:8.2f} "
              f"{r['libvirtd_cpu'] if r['libvirtd_cpu'] is not None else '-':>8} "
              f"{r.get('machine_cpu', '-'):>8}  "
              f"{r['load1_before']}->{r['load1_after']}")
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
