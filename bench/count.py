"""`instance create --count N`: wall time until all N are SSH-ready, beside N times one.

The creates must overlap, not queue: on this 2-core TCG host four guests cannot boot as
fast as one, but they must finish well before four boots in a row would.

    ip netns exec nbcloud-test .venv/bin/python bench/count.py [--counts 1 2 4 8]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import save  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import machine  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402



def timed_create(cloud: Cloud, count: int) -> float:
    name = f"bn-c{count}"
    start = time.perf_counter()
    made = cloud.instances.create(name, flavor="m.nano", count=count)
    for inst in made if isinstance(made, list) else [made]:
        inst.ssh("true")
    elapsed = time.perf_counter() - start
    for inst in made if isinstance(made, list) else [made]:
        inst.delete()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    args = ap.parse_args()
    cloud = Cloud("qemu:///system")
    cloud.build_tiny()
    accel = cloud.accelerator()["accelerator"]
    timed_create(cloud, 1)                                   # warm-up, not counted
    single = timed_create(cloud, 1)
    rows = []
    for n in args.counts:
        wall = single if n == 1 else timed_create(cloud, n)
        rows.append({"count": n, "wall": round(wall, 3), "serial": round(n * single, 3),
                     "speedup": round(n * single / wall, 2)})
    result = {"benchmark": "create --count N to all SSH-ready, tiny image, m.nano",
              "accelerator": accel, "cores": os.cpu_count(),
              "machine": f"{platform.node()} {platform.release()}", "host": machine.describe(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    save("count", result)
    print(f"create --count N -> all SSH-ready, tiny image, m.nano, {accel}, "
          f"{os.cpu_count()} cores")
    print(f"  {'N':>3} {'wall s':>8} {'N x one s':>10} {'overlap':>8}")
    for r in rows:
        print(f"  {r['count']:>3} {r['wall']:8.2f} {r['serial']:10.2f} {r['speedup']:7.2f}x")
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
