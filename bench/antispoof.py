"""What anti-spoofing costs a create, in one run, rounds interleaved (the order
alternating):

1. create -> SSH-ready of the tiny image with every NIC filtered by `nbcloud-antispoof`
   (what nbcloud does) against the same create with the NIC unfiltered;
2. the start of a bare domain with one NIC (virDomainCreate alone, where libvirt
   instantiates the filter) unfiltered, with `nbcloud-antispoof`, with libvirt's
   no-mac-/no-ip-/no-arp-spoofing, and with libvirt's clean-traffic.

The second is the figure to trust on a busy machine: a boot's own spread under TCG is
larger than the filter's cost.

Run inside the daemon's network namespace (guests are reachable only there):
    ip netns exec nbcloud-test .venv/bin/python bench/antispoof.py [--rounds 5] [--starts 8]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import create_to_ssh, print_spread, save, summary  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402
from nbcloud.providers.libvirt import xml as lx  # noqa: E402
from nbcloud.providers.libvirt.nwfilters import FilterDef  # noqa: E402

TRIO = "bench-antispoof-trio"   # libvirt's three filters in one, as clean-traffic holds them


@contextmanager
def unfiltered():
    """NICs made without their address, so without the anti-spoofing filterref."""
    real = lx.Nic
    lx.Nic = lambda network, mac, host_port=None, ip="": real(network, mac, host_port)
    try:
        yield
    finally:
        lx.Nic = real


def start_seconds(cloud: Cloud, name: str, flt: str) -> float:
    """virDomainCreate of a bare domain with one NIC on `nbcloud` filtered by `flt`."""
    d = lx.DomainDef(name=name, vcpus=1, memory=64 << 20, domain_type="qemu",
                     nics=(lx.Nic("nbcloud", "52:54:00:5e:c0:01"),))
    root = ET.fromstring(lx.domain_xml(d))
    if flt:
        root.find("devices/interface").append(lx.filterref_element(flt, "10.77.0.250"))
    dom = cloud.provider.conn.defineXML(ET.tostring(root, encoding="unicode"))
    try:
        start = time.perf_counter()
        dom.create()
        return time.perf_counter() - start
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--starts", type=int, default=8)
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
    cloud.provider.define_nwfilter(FilterDef(TRIO, refs=(
        "no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing")))
    variants = {"unfiltered": "", lx.BASE_FILTER: lx.BASE_FILTER,
                "no-mac/ip/arp-spoofing": TRIO, "clean-traffic": "clean-traffic"}
    starts: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for i in range(args.starts):
            order = list(variants) if i % 2 == 0 else list(variants)[::-1]
            for v in order:
                starts[v].append(start_seconds(cloud, f"{args.name}-st", variants[v]))
    finally:
        cloud.provider.undefine_nwfilter(TRIO)
    f, b = summary(filtered), summary(bare)
    st = {v: summary(t) for v, t in starts.items()}
    base = st["unfiltered"]["median"]
    result = {"benchmark": "anti-spoofing: create-to-ssh and domain start",
              "accelerator": accel, "load": os.getloadavg()[0],
              "machine": f"{platform.node()} {os.cpu_count()} cores {platform.release()}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
              "flavor": args.flavor, "filtered": f, "unfiltered": b,
              "ratio": f["median"] / b["median"], "starts": st,
              "rows": [{"": "create -> SSH", "filtered (s)": round(f["median"], 2),
                        "unfiltered (s)": round(b["median"], 2),
                        "ratio": round(f["median"] / b["median"], 3)}] +
                      [{"": f"domain start, {v}", "filtered (s)": round(s["median"], 2),
                        "unfiltered (s)": round(base, 2),
                        "ratio": round(s["median"] / base, 3)}
                       for v, s in st.items() if v != "unfiltered"]}
    save("antispoof", result)
    print(f"create -> SSH-ready, tiny image, {args.flavor}, {accel}, "
          f"{args.rounds} interleaved rounds (load {result['load']:.1f})")
    print_spread((("filtered", f), ("unfiltered", b)), width=12)
    print(f"  ratio filtered/unfiltered: {result['ratio']:.3f}")
    print(f"domain start (virDomainCreate), one NIC, {args.starts} interleaved rounds")
    print_spread(tuple(st.items()), width=24)
    for v, s in st.items():
        if v != "unfiltered":
            print(f"  {v}: +{s['median'] - base:.2f} s per NIC")
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
