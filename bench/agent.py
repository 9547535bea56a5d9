"""The host agent's CPU cost per tick with N watched instances, beside the in-kernel
sampler's (what bench/monitor.py measures) and a kernel's fed from the agent, measured in
the same run on the same domains.

The domains are N nbcloud-marked running domains of libvirt's test driver, from a node
file (`test:///PATH.xml`), so that the agent, a process of its own, and this process see
the same ones. The test driver answers in-process: the bulk stats call's cost is counted
where a real daemon would spend it in libvirtd (as in bench/monitor.py). Measured:

- in-kernel sampler: the CPU time of a kernel's sampler thread (a `Monitor` watching N:
  one bulk stats call per tick, rows written every 10 s) over its ticks;
- agent: the agent process's CPU time (every thread's, from /proc/PID/task/*/schedstat)
  over the same number of ticks, kernels holding leases on the N names: one bulk call,
  N rows written every tick, leases read, balancers and failover records checked, the
  heartbeat written;
- kernel fed from the agent: the same thread's CPU time while the agent serves: leases
  renewed, the agent's rows read, no libvirt.

    .venv/bin/python bench/agent.py [--ticks 30] [--counts 10 50]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import save  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402
from nbcloud.inventory import Inventory  # noqa: E402
from nbcloud.providers.libvirt import xml as lx  # noqa: E402


def node_file(folder: Path, count: int) -> str:
    """A test driver node file with `count` running nbcloud-marked domains; its URI."""
    doms = [lx.domain_xml(lx.DomainDef(
        name=f"ag-bench-{i}", vcpus=1, memory=128 << 20, domain_type="test",
        boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(),
        metadata={"kind": "instance", "stack": "bench", "image": "tiny",
                  "flavor": "c.nano"})) for i in range(count)]
    path = folder / f"node-{count}.xml"
    path.write_text("<node>" + "".join(doms) + "</node>")
    return f"test://{path}"


def task_cpu(pid: int) -> float:
    """CPU seconds of every live thread of process `pid`."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def thread_cpu(tid: int) -> float:
    """CPU seconds of thread `tid` of this process."""
    return int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0]) / 1e9


def kernel_ticks(cloud: Cloud, names: list[str], ticks: int, interval: float) -> float:
    """CPU seconds per tick of `cloud`'s sampler thread over `ticks` ticks (the thread
    alone: this process's polling for the count is not the kernel's cost)."""
    mon = cloud.monitor
    mon.interval = interval
    mon.watch(*names, start=False)
    mon.tick()   # warm: leases written, first reads made
    mon.start()
    tid = mon._thread.native_id
    start_ticks, cpu0 = mon.ticks, thread_cpu(tid)
    while mon.ticks - start_ticks < ticks:
        time.sleep(0.05)
    cpu, done = thread_cpu(tid) - cpu0, mon.ticks - start_ticks
    mon.stop()
    return cpu / done


def measure(tmp: Path, count: int, ticks: int, interval: float) -> dict:
    uri = node_file(tmp, count)
    names = [f"ag-bench-{i}" for i in range(count)]
    inv_path = tmp / f"inv-{count}.sqlite"
    kernel = Cloud(uri, inventory=Inventory(inv_path))
    try:
        sampler = kernel_ticks(kernel, names, ticks, interval)
    finally:
        kernel.close()
    folder = tmp / f"agent-{count}"
    agent = subprocess.Popen([sys.executable, "-m", "nbcloud.agent", "run", "--uri", uri,
                              "--inventory", str(inv_path), "--folder", str(folder),
                              "--interval", str(interval)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    inv = Inventory(inv_path)
    try:
        inv.watch(uri, names, time.time() + 3600)   # what kernels' leases ask
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:   # until it writes rows of all N each tick
            row = inv.agent(uri)
            last = inv.samples_after(uri, names, time.time() - 2 * interval)
            if row and row["note"] != "restoring" and len({r["name"] for r in last}) == count:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the agent did not start sampling within 60 s")
        t0, cpu0 = time.time(), task_cpu(agent.pid)
        time.sleep(ticks * interval)
        t1, cpu1 = time.time(), task_cpu(agent.pid)
        written = {r["t"] for r in inv.samples_after(uri, names[:1], t0)}
        agent_cpu = (cpu1 - cpu0) / max(1, len([t for t in written if t <= t1]))
        fed = Cloud(uri, inventory=Inventory(inv_path))
        try:
            fed_cpu = kernel_ticks(fed, names, ticks, interval)
            assert fed.monitor.source == "agent"
        finally:
            fed.close()
    finally:
        agent.terminate()
        agent.wait(30)
        inv.close()
    return {"sampler": sampler, "agent": agent_cpu, "fed": fed_cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 50])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nbcloud-agent-bench-"))
    os.environ["NBCLOUD_HOME"] = str(tmp / "home")
    rows = []
    try:
        results = {n: measure(tmp, n, args.ticks, args.interval) for n in args.counts}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for count, got in results.items():
        base = got["sampler"]
        for what, key in ((f"in-kernel sampler, {count} watched (baseline)", "sampler"),
                          (f"host agent process, {count} watched", "agent"),
                          (f"kernel fed from the agent, {count} watched", "fed")):
            cpu = got[key]
            rows.append({"what": what, "instances": count,
                         "cpu_ms_per_tick": round(cpu * 1000, 3),
                         "vs_in_kernel_sampler": round(cpu / base, 2) if base else None,
                         "core_percent_at_1hz": round(cpu / args.interval * 100, 3)})
    result = {"benchmark": "host agent CPU per tick vs the in-kernel sampler",
              "ticks": args.ticks, "interval_s": args.interval,
              "statistic": "CPU time / ticks (a kernel: its sampler thread's; the agent: "
                           "all its threads'; from /proc/.../schedstat)",
              "driver": "test:/// node file (in-process: the bulk call's cost is counted "
                        "in the caller)",
              "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
              "machine": f"{platform.node()} {platform.release()}",
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "rows": rows}
    save("agent", result)
    print(f"{args.ticks} ticks every {args.interval:g} s (load {result['load_avg_1m']})")
    print(f"  {'':<46} {'ms/tick':>8} {'x kernel':>9} {'% core':>7}")
    for r in rows:
        print(f"  {r['what']:<46} {r['cpu_ms_per_tick']:>8} {r['vs_in_kernel_sampler']:>9} "
              f"{r['core_percent_at_1hz']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
