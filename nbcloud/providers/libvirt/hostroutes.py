"""The ranges the host itself uses, which no new network may cover: every IPv4 route of
every routing table (the default route aside), every address, every gateway, as
iproute2 reports them for this process's network namespace (where the daemon runs when
it is local: `nbcloud host up --netns` puts both in one).

A network over one of them would put a bridge with the host's own gateway or address on
it, or capture traffic the host routes elsewhere.
"""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

from nbcloud.providers.types import HostRoute


def _ip_json(*args: str) -> list[dict]:
    binary = shutil.which("ip") or "/usr/sbin/ip"
    try:
        out = subprocess.run([binary, "-j", "-4", *args], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return json.loads(out or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def parse_routes(routes: list[dict], addresses: list[dict]) -> list[HostRoute]:
    """HostRoutes from `ip -j -4 route show table all` and `ip -j -4 addr` output."""
    out: list[HostRoute] = []
    for r in routes:
        dev = r.get("dev", "")
        if r.get("gateway"):
            out.append(HostRoute(ipaddress.IPv4Network(r["gateway"]),
                                 f"this host's gateway ({r['gateway']}"
                                 + (f" on {dev})" if dev else ")")))
        dst = r.get("dst", "default")
        if dst == "default":
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        kind = "an address" if r.get("type") == "local" else "a route"
        out.append(HostRoute(net, f"{kind} of this host" + (f" ({dev})" if dev else "")))
    for link in addresses:
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a.get("local"):
                out.append(HostRoute(ipaddress.IPv4Network(a["local"]),
                                     f"an address of this host ({link.get('ifname', '?')})"))
    return out


def host_routes() -> list[HostRoute]:
    """The ranges this network namespace routes or owns (none where iproute2 is missing)."""
    return parse_routes(_ip_json("route", "show", "table", "all"), _ip_json("addr"))
