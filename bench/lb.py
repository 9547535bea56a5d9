"""The load balancer on the real daemon: requests per second through HAProxy beside the
same requests sent straight to the two members in turn (the baseline, measured in the
same run; sequential, so it is latency that is compared), and how
long the health checks take to take a dead member out and put it back.

Boots two tiny guests (busybox httpd). Run inside the daemon's network namespace:

    ip netns exec nbcloud-test .venv/bin/python bench/lb.py [--requests 200]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import save  # noqa: E402

from nbcloud.api import Cloud
from nbcloud.inventory import Inventory

USER_DATA = "#!/bin/sh\nmkdir -p /srv/www\nhostname > /srv/www/index.html\n" \
            "httpd -p 80 -h /srv/www\n"


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode().strip()
    except OSError:
        return ""


def rate(urls: list[str], n: int) -> float:
    """Successful sequential requests per second, taking `urls` in turn."""
    start = time.perf_counter()
    ok = sum(bool(get(urls[i % len(urls)])) for i in range(n))
    return round(ok / (time.perf_counter() - start), 1)


def until(predicate, timeout: float = 60) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return round(time.monotonic() - start, 2)
        time.sleep(0.05)
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    os.environ.setdefault("NBCLOUD_HOME", tempfile.mkdtemp(prefix="nbcloud-bench-lb-"))
    cloud = Cloud("qemu:///system",
                  inventory=Inventory(Path(os.environ["NBCLOUD_HOME"]) / "inv.sqlite"))
    members = cloud.instances.create("lb-bench", user_data=USER_DATA, count=2)
    try:
        for m in members:
            until(lambda m=m: get(f"http://{m.ip}/") == m.name)
        lb = cloud.lbs.create("lb-bench", "nbcloud", 8099, members=["lb-bench-*"],
                              member_port=80)
        until(lambda: set(lb.health().values()) == {"UP"})
        # the baseline takes the two members in turn itself, as the balancer does
        direct = rate([f"http://{m.ip}/" for m in members], args.requests)
        through = rate([f"http://{lb.address}/"], args.requests)
        members[1].ssh("killall httpd")
        out = until(lambda: lb.health().get(members[1].name, "").startswith("DOWN"))
        members[1].ssh("httpd -p 80 -h /srv/www")
        back = until(lambda: lb.health().get(members[1].name) == "UP")
        cloud.lbs.delete("lb-bench")
    finally:
        for m in members:
            cloud.instances.delete(m.name)
        cloud.close()
    result = {"machine": platform.node(), "cpus": os.cpu_count(),
              "load": os.getloadavg()[0], "requests": args.requests,
              "direct_rps": direct, "through_lb_rps": through,
              "ratio": round(through / direct, 2) if direct else None,
              "dead_member_out_s": out, "member_back_s": back,
              "health_check": "inter 1s fall 2 rise 1"}
    save("lb", result, 2)
    print(f"requests/s: direct {direct}, through the balancer {through} "
          f"(ratio {result['ratio']}); dead member out after {out} s, back after {back} s "
          f"(checks every 1 s, out after 2 failures, back after 1 success)")


if __name__ == "__main__":
    main()
