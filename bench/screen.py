"""What a VGA adapter costs the tiny image's boot (start -> SSH-ready), in one run.

`%cloud instance screenshot` needs a video device; nbcloud's domains have none unless
created with --screen, because libvirt's default devices slowed the boot. This measures the
VGA adapter alone: one instance is made, then booted again and again from the same
definition with and without `<video><model type='vga'/>` (rounds interleaved so a noisy
machine slows both alike), each boot timed from `virDomainCreate` to a command run over SSH
with the pinned key. Besides the wall time it records the CPU time QEMU used for the boot,
which other load on a shared host stretches far less. One instance, one address: booting
the same domain again does not use up the network's addresses as create/delete rounds do.

Run inside the daemon's network namespace (guests are reachable only there):
    ip netns exec nbcloud-test .venv/bin/python bench/screen.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import print_spread, save, summary  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402

NAME = "bench-screen"


def qemu_cpu_seconds(name: str) -> float:
    """CPU time (user + system) QEMU of domain `name` has used so far: the work of the
    boot, which other load on the host stretches far less than the wall time."""
    pid = Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_video(xml: str, video: bool) -> str:
    root = ET.fromstring(xml)
    devices = root.find("devices")
    for el in devices.findall("video"):
        devices.remove(el)
    if video:
        ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
    return ET.tostring(root, encoding="unicode")


def one_round(cloud: Cloud, xml: str, video: bool) -> tuple[float, float]:
    """(wall seconds, QEMU CPU seconds) from start to a command run over SSH."""
    cloud.provider.conn.defineXML(with_video(xml, video))
    inst = cloud.instances.get(NAME)
    start = time.perf_counter()
    cloud.provider.start(NAME)
    inst.wait_ready()
    inst.ssh("true")
    elapsed = time.perf_counter() - start
    cpu = qemu_cpu_seconds(NAME)
    inst.close()
    cloud.provider.conn.lookupByName(NAME).destroy()
    return elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--flavor", default="m.nano")
    args = ap.parse_args()
    cloud = Cloud("qemu:///system")
    cloud.build_tiny()
    accel = cloud.accelerator()["accelerator"]
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    cloud.instances.create(NAME, flavor=args.flavor, wait=False)
    cloud.provider.conn.lookupByName(NAME).destroy()
    xml = cloud.provider.conn.lookupByName(NAME).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    times: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    try:
        one_round(cloud, xml, False)   # warm caches once, not counted
        for i in range(args.rounds):
            for video in ((False, True) if i % 2 == 0 else (True, False)):
                wall, cpu = one_round(cloud, xml, video)
                times[video].append(wall)
                cpus[video].append(cpu)
    finally:
        cloud.instances.delete(NAME)
    without, with_ = summary(times[False]), summary(times[True])
    cpu_without, cpu_with = summary(cpus[False]), summary(cpus[True])
    cost = with_["median"] - without["median"]
    cpu_cost = cpu_with["median"] - cpu_without["median"]
    result = {"benchmark": "VGA adapter cost on start-to-ssh, tiny image",
              "accelerator": accel,
              "machine": f"{platform.node()} {os.cpu_count()} cores {platform.release()}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
              "flavor": args.flavor, "without_video": without, "with_vga": with_,
              "cost_s": cost, "ratio": with_["median"] / without["median"],
              "qemu_cpu_without_video": cpu_without, "qemu_cpu_with_vga": cpu_with,
              "cpu_cost_s": cpu_cost,
              "load_average": os.getloadavg()}
    save("screen", result)
    print(f"start -> SSH-ready, tiny image, {args.flavor}, {accel}, "
          f"{args.rounds} interleaved rounds")
    print_spread((("no video", without), ("vga", with_)), 12)
    print_spread((("no video (cpu)", cpu_without), ("vga (cpu)", cpu_with)), 12,
                 "s of QEMU CPU time")
    print(f"  VGA costs {cost:+.2f} s wall (ratio {result['ratio']:.3f}), "
          f"{cpu_cost:+.2f} s of QEMU CPU; load average {os.getloadavg()[0]:.1f}")
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
