"""Host memory per tiny instance, and QEMU's TCG translation-block cache.

Under TCG, QEMU keeps the guest's translated code in a cache it sizes itself (with the
QEMU 7.2 default, a 128 MiB guest was seen using ~210 MiB of host RSS). libvirt 9.0 sets
the size per domain with `<features><tcg><tb-cache unit='MiB'>N</tb-cache></tcg>`. This
boots the same tiny domain XML (an nbcloud instance's, undefined, as bench/boot.py's floor)
with each cache size in turn, rounds interleaved, and records create -> SSH-ready and the
QEMU process's VmRSS (/proc/PID/status) when SSH answers and a few seconds later, and
the CPU time QEMU used until SSH answered (a measure a busy machine distorts less).

    ip netns exec nbcloud-test .venv/bin/python bench/memory.py [--rounds 2] [--sizes 0 64 32 16]

Size 0 means the XML without a <tcg> element: QEMU's own default.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import save  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boot  # noqa: E402
import machine  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402

URI = "qemu:///system"
SETTLE = 3.0          # seconds after SSH-ready for the second RSS reading


def with_tb_cache(xml_text: str, mib: int) -> str:
    """The domain XML with a TCG translation cache of `mib` MiB (0: no <tcg>, QEMU's
    default)."""
    root = ET.fromstring(xml_text)
    features = root.find("features")
    if features is None:
        features = ET.SubElement(root, "features")
    for old in features.findall("tcg"):
        features.remove(old)
    if mib:
        tcg = ET.SubElement(features, "tcg")
        ET.SubElement(tcg, "tb-cache", unit="MiB").text = str(mib)
    return ET.tostring(root, encoding="unicode")


def qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the QEMU process: what a boot cost in work, which a
    busy machine stretches far less than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_boot(xml_path: str, meta: dict, name: str) -> dict:
    start = time.perf_counter()
    subprocess.run(["virsh", "-q", "-c", URI, "create", xml_path], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        boot.ssh_ready(meta)
        elapsed = time.perf_counter() - start
        pid = qemu_pid(name)
        at_ready, cpu = rss_mib(pid), cpu_seconds(pid)
        time.sleep(SETTLE)
        return {"boot": elapsed, "cpu": cpu, "rss_ready": at_ready,
                "rss_settled": rss_mib(pid)}
    finally:
        subprocess.run(["virsh", "-q", "-c", URI, "destroy", name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 64, 32, 16])
    ap.add_argument("--flavor", default="t.nano", help="t.nano: a 128 MiB guest")
    args = ap.parse_args()
    cloud = Cloud(URI)
    cloud.build_tiny()
    name = "bn-mem"
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    base_xml, meta = boot.prepare_floor(cloud, name, args.flavor)
    base = Path(base_xml).read_text()
    paths = {}
    for mib in args.sizes:
        fd, path = tempfile.mkstemp(suffix=".xml", prefix=f"bn-mem-{mib}-")
        with os.fdopen(fd, "w") as f:
            f.write(with_tb_cache(base, mib))
        paths[mib] = path
    runs: dict[int, list[dict]] = {mib: [] for mib in args.sizes}
    try:
        for i in range(args.rounds):
            order = args.sizes[i % len(args.sizes):] + args.sizes[:i % len(args.sizes)]
            for mib in order:
                r = one_boot(paths[mib], meta, name)
                runs[mib].append(r)
                print(f"  round {i + 1} tb-cache {mib or 'default'}: boot {r['boot']:.2f} s, "
                      f"QEMU CPU {r['cpu']:.2f} s, "
                      f"RSS {r['rss_ready']:.0f} -> {r['rss_settled']:.0f} MiB", flush=True)
    finally:
        subprocess.run(["virsh", "-q", "-c", URI, "destroy", name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["virsh", "-q", "-c", URI, "define", base_xml],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
        for path in [base_xml, *paths.values()]:
            os.unlink(path)
    rows = []
    for mib in args.sizes:
        rs = runs[mib]
        rows.append({
            "tb_cache_mib": mib or None, "label": f"{mib} MiB" if mib else "QEMU default",
            "boot_median": round(statistics.median(r["boot"] for r in rs), 3),
            "boot_runs": [round(r["boot"], 3) for r in rs],
            "cpu_median": round(statistics.median(r["cpu"] for r in rs), 2),
            "rss_ready_median": round(statistics.median(r["rss_ready"] for r in rs), 1),
            "rss_settled_median": round(statistics.median(r["rss_settled"] for r in rs), 1),
            "rss_runs": [round(r["rss_settled"], 1) for r in rs]})
    default = next((r for r in rows if r["tb_cache_mib"] is None), rows[0])
    for r in rows:
        r["boot_vs_default"] = round(r["boot_median"] / default["boot_median"], 3)
        r["cpu_vs_default"] = round(r["cpu_median"] / default["cpu_median"], 3)
    result = {"benchmark": "host RSS per tiny instance vs TCG tb-cache size",
              "flavor": args.flavor, "guest_memory_mib": cloud_memory(args.flavor),
              "rounds": args.rounds, "accelerator": cloud.accelerator()["accelerator"],
              "machine": machine.describe(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "rows": rows}
    save("memory", result)
    print(f"QEMU RSS per tiny instance ({args.flavor}, {result['guest_memory_mib']} MiB guest), "
          f"{args.rounds} interleaved rounds")
    print(f"  {'tb-cache':>12} {'boot s':>7} {'vs dflt':>8} {'CPU s':>6} {'vs dflt':>8} "
          f"{'RSS@SSH':>8} {'RSS+3s':>7}")
    for r in rows:
        print(f"  {r['label']:>12} {r['boot_median']:7.2f} {r['boot_vs_default']:8.3f} "
              f"{r['cpu_median']:6.2f} {r['cpu_vs_default']:8.3f} "
              f"{r['rss_ready_median']:8.0f} {r['rss_settled_median']:7.0f}  MiB")
    cloud.close()
    return 0


def cloud_memory(flavor: str) -> int:
    from nbcloud.core.flavors import get_flavor
    return get_flavor(flavor).memory >> 20


if __name__ == "__main__":
    sys.exit(main())
