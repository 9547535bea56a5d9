"""What a synced folder costs at boot: `instances.create` of the tiny image with and without
`sync=` (shared memfd memory, a virtiofsd per folder, the mount in the guest), in one run.

The baseline is the same create without a folder; rounds alternate which goes first so a
noisy machine slows both alike. "Ready" is what `create` waits for: SSH answers (and, with
a folder, the folder is mounted in the guest), then `true` runs over SSH.

Run inside the daemon's network namespace:
    ip netns exec nbcloud-test .venv/bin/python bench/sync.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import create_to_ssh, save, summary  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402

NAME = "bench-sync"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--flavor", default="m.nano")
    args = ap.parse_args()
    cloud = Cloud("qemu:///system")
    cloud.build_tiny()
    with tempfile.TemporaryDirectory(prefix="nbcloud-bench-sync-") as folder:
        sync = [f"{folder}:/mnt/host"]
        create_to_ssh(cloud, NAME, flavor=args.flavor)  # warm caches once, not counted
        plain, synced = [], []
        for i in range(args.rounds):
            pair = [lambda: plain.append(create_to_ssh(cloud, NAME, flavor=args.flavor)),
                    lambda: synced.append(create_to_ssh(cloud, NAME, flavor=args.flavor,
                                                           sync=sync))]
            for run in (pair if i % 2 == 0 else pair[::-1]):
                run()
    p, s = summary(plain), summary(synced)
    ratio = s["median"] / p["median"]
    result = {"benchmark": "create-to-ready with and without a synced folder, tiny image",
              "accelerator": cloud.accelerator()["accelerator"],
              "machine": f"{platform.node()} {os.cpu_count()} cores {platform.release()}",
              "load": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
              "rounds": args.rounds, "flavor": args.flavor,
              "plain": p, "synced": s, "ratio": ratio}
    save("sync", result)
    print(f"create -> ready, tiny image, {args.flavor}, {args.rounds} interleaved rounds")
    print(f"  {'':14} {'median':>8} {'min':>8} {'max':>8}")
    for label, r in (("no folder", p), ("synced folder", s)):
        print(f"  {label:14} {r['median']:8.2f} {r['min']:8.2f} {r['max']:8.2f}  s")
    print(f"  ratio synced/plain: {ratio:.3f}")
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
