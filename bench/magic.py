"""Magic overhead: `%cloud instance list` with 1,000 instances, beside the raw libvirt
calls underneath, on libvirt's in-process test driver (no guest boots).

The 1,000 instances are domains defined with nbcloud's metadata and recorded in the
inventory, as `instance create` leaves them. The magic's figure includes IPython's
dispatch, the command parser, the live reads and building the Table and its HTML (what
the notebook shows); the raw figure is `listAllDomains` and the metadata and state of
each domain.

    .venv/bin/python bench/magic.py [--instances 1000] [--runs 5]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import save  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt  # noqa: E402
import machine  # noqa: E402

from nbcloud.providers.libvirt import xml as lx  # noqa: E402

URI = "test:///default"


def median_ms(fn, runs: int) -> tuple[float, list[float]]:
    fn()   # warm-up, not counted
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2), [round(t, 2) for t in times]


def record(cloud, n: int) -> None:
    conn = cloud.provider.conn
    for i in range(n):
        name = f"bn-l{i}"
        meta = {"kind": "instance", "stack": "adhoc", "image": "tiny", "flavor": "t.nano",
                "networks": "nbcloud", "ip": f"10.98.{i // 250}.{i % 250 + 2}",
                "key": "default"}
        dom = conn.defineXML(lx.domain_xml(lx.DomainDef(
            name=name, vcpus=1, memory=128 << 20, domain_type="test",
            boot=lx.KernelBoot("/k", "/i", ""), metadata=meta)))
        if i % 2 == 0:
            dom.create()
        cloud.inventory.put(cloud.uri, "instance", name, state="running", uuid=dom.UUIDString(),
                            spec={"image": "tiny", "flavor": "t.nano",
                                  "networks": ["nbcloud"]})


def raw_list(conn: libvirt.virConnect) -> list:
    rows = []
    for dom in conn.listAllDomains(0):
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, lx.NS, 0)
        except libvirt.libvirtError:
            continue
        rows.append((dom.name(), dom.state()[0], lx.parse_metadata(text).get("ip")))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from IPython.core.interactiveshell import InteractiveShell

    tmp = Path(tempfile.mkdtemp(prefix="bn-magic-"))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcloud")
    shell.run_line_magic("config", f"CloudMagics.inventory = '{tmp / 'inv.sqlite'}'")
    shell.run_line_magic("cloud", f"connect {URI}")
    from nbcloud import _magics
    cloud = _magics.api
    record(cloud, args.instances)

    def magic():
        table = shell.run_line_magic("cloud", "instance list")
        table._repr_html_()
        return table

    shown = magic()
    ours = sum(1 for row in shown if row["name"].startswith("bn-l"))
    assert ours == args.instances, f"list showed {ours} of {args.instances}"
    magic_ms, magic_runs = median_ms(magic, args.runs)
    raw_ms, raw_runs = median_ms(lambda: raw_list(cloud.provider.conn), args.runs)
    for i in range(args.instances):
        dom = cloud.provider.conn.lookupByName(f"bn-l{i}")
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    shell.run_line_magic("unload_ext", "nbcloud")
    shutil.rmtree(tmp)

    row = {"what": f"%cloud instance list, {args.instances} instances", "nbcloud_ms": magic_ms,
           "raw_ms": raw_ms, "ratio": round(magic_ms / raw_ms, 1) if raw_ms else None,
           "raw": "listAllDomains + metadata + state of each",
           "per_instance_ms": round(magic_ms / args.instances, 3),
           "nbcloud_runs": magic_runs, "raw_runs": raw_runs}
    result = {"benchmark": "magic overhead on test:///default", "runs": args.runs,
              "statistic": "median", "machine": machine.describe(),
              "libvirt": libvirt.getVersion(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "rows": [row]}
    save("magic", result)
    print(f"median of {args.runs} runs, {URI}")
    print(f"  {row['what']}: {magic_ms} ms (raw {raw_ms} ms, {row['ratio']}x; "
          f"{row['per_instance_ms']} ms per instance)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
