"""What anti-spoofing costs a create: create -> SSH-ready of the tiny image with every NIC
filtered by libvirt's clean-traffic (what nbcloud does) against the same create with the
NIC unfiltered, in one run, rounds interleaved (the order alternating).

Run inside the daemon's network namespace (guests are reachable only there):
    ip netns exec nbcloud-test .venv/bin/python bench/antispoof.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import create_to_ssh, print_spread, save, summary  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402
from nbcloud.providers.libvirt import xml as lx  # noqa: E402


@contextmanager
def unfiltered():
    """NICs made without their address, so without the anti-spoofing filterref."""
    real = lx.Nic
    lx.Nic = lambda network, mac, host_port=None, ip="": real(network, mac, host_port)
    try:
        yield
    finally:
        lx.Nic = real


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--flavor", default="m.nano")
    ap.add_argument("--name", default="bench-as")
    args = ap.parse_args()
    cloud = Cloud("qemu:///system")
    accel = cloud.accelerator()["accelerator"]
    filtered, bare = [], []

    def with_filter():
        filtered.append(create_to_ssh(cloud, args.name, flavor=args.flavor))

    def without():
        with unfiltered():
            bare.append(create_to_ssh(cloud, args.name, flavor=args.flavor))

    create_to_ssh(cloud, args.name, flavor=args.flavor)   # warm caches, not counted
    for i in range(args.rounds):
        for run in ((with_filter, without) if i % 2 == 0 else (without, with_filter)):
            run()
    f, b = summary(filtered), summary(bare)
    result = {"benchmark": "create-to-ssh with anti-spoofing filter", "accelerator": accel,
              "machine": f"{platform.node()} {os.cpu_count()} cores {platform.release()}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
              "flavor": args.flavor, "filtered": f, "unfiltered": b,
              "ratio": f["median"] / b["median"]}
    save("antispoof", result)
    print(f"create -> SSH-ready, tiny image, {args.flavor}, {accel}, "
          f"{args.rounds} interleaved rounds")
    print_spread((("filtered", f), ("unfiltered", b)), width=12)
    print(f"  ratio filtered/unfiltered: {result['ratio']:.3f}")
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
