"""Create -> SSH-ready time of the tiny image: nbcloud against the floor, in one run.

The floor is the same domain XML (same seed, same address reservation) started with plain
`virsh create` and polled for SSH exactly as nbcloud polls it. Rounds are interleaved so a
noisy machine slows both alike; the ratio is the figure that matters.

Run inside the daemon's network namespace (guests are reachable only there):
    ip netns exec nbcloud-test .venv/bin/python bench/boot.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import create_to_ssh, print_spread, save, summary  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402
from nbcloud.services import (
    keys,  # noqa: E402
    ssh,  # noqa: E402
)



def ssh_ready(meta: dict, timeout: float = 120.0) -> None:
    """Wait for the SSH banner, then run `true` with the pinned host key."""
    ssh.wait_for_banner(meta["ip"], timeout=timeout)
    client = ssh.connect(meta["ip"], host_key=meta["hostkey"],
                         key_path=keys.user_key(meta.get("key", "default")).private_path)
    try:
        ssh.run(client, "true")
    finally:
        client.close()


def floor_round(xml_path: str, meta: dict, name: str) -> float:
    start = time.perf_counter()
    subprocess.run(["virsh", "-q", "-c", "qemu:///system", "create", xml_path], check=True,
                   stdout=subprocess.DEVNULL)
    ssh_ready(meta)
    elapsed = time.perf_counter() - start
    subprocess.run(["virsh", "-q", "-c", "qemu:///system", "destroy", name], check=True,
                   stdout=subprocess.DEVNULL)
    return elapsed


def prepare_floor(cloud: Cloud, name: str, flavor: str) -> tuple[str, dict]:
    """An nbcloud instance's XML (with its seed and reservation), its domain undefined."""
    inst = cloud.instances.create(name, flavor=flavor)
    meta = inst.meta
    xml = cloud.provider.conn.lookupByName(name).XMLDesc(0x2)   # inactive XML
    root = ET.fromstring(xml)
    log = root.find("devices/serial/log")
    if log is not None:                     # keep the console log away from nbcloud's
        log.set("file", log.get("file", "").replace(".console.log", ".floor.log"))
    fd, path = tempfile.mkstemp(suffix=".xml", prefix="floor-")
    with os.fdopen(fd, "w") as f:
        f.write(ET.tostring(root, encoding="unicode"))
    inst.stop(timeout=5)
    cloud.provider.conn.lookupByName(name).undefine()
    return path, meta


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--flavor", default="m.nano",
                    help="m.nano (default) has no CPU quota; a t.* flavor is capped once "
                         "SSH answers, which slows the first command, and the floor's "
                         "XML carries no such cap")
    args = ap.parse_args()
    cloud = Cloud("qemu:///system")
    cloud.build_tiny()
    accel = cloud.accelerator()["accelerator"]
    floor_name = "bench-floor"
    for leftover in ("bench-nb", floor_name):
        if cloud.provider.exists(leftover):
            cloud.instances.delete(leftover)
    xml_path, floor_meta = prepare_floor(cloud, floor_name, args.flavor)
    nb_times, floor_times = [], []
    try:
        create_to_ssh(cloud, "bench-nb", flavor=args.flavor)   # warm caches once, not counted
        for i in range(args.rounds):
            pair = [("nbcloud", lambda: nb_times.append(
                        create_to_ssh(cloud, "bench-nb", flavor=args.flavor))),
                    ("floor", lambda: floor_times.append(
                        floor_round(xml_path, floor_meta, floor_name)))]
            for _, run in (pair if i % 2 == 0 else pair[::-1]):
                run()
    finally:
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "destroy", floor_name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # re-define the floor's domain from its XML so nbcloud can delete it with its
        # seed volume and address reservation
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "define", xml_path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if cloud.provider.exists(floor_name):
            cloud.instances.delete(floor_name)
        os.unlink(xml_path)
    nb, fl = summary(nb_times), summary(floor_times)
    ratio = nb["median"] / fl["median"]
    result = {"benchmark": "create-to-ssh, tiny image", "accelerator": accel,
              "machine": f"{platform.node()} {os.cpu_count()} cores {platform.release()}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
              "flavor": args.flavor,
              "nbcloud": nb, "floor": fl, "ratio": ratio}
    save("boot", result)
    print(f"create -> SSH-ready, tiny image, {args.flavor}, {accel}, "
          f"{args.rounds} interleaved rounds")
    print_spread((("nbcloud", nb), ("floor", fl)))
    print(f"  ratio nbcloud/floor: {ratio:.3f} (target <= 1.10); "
          f"tiny SSH-ready median {nb['median']:.2f} s (target <= 5 s)")
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
