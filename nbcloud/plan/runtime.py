"""What runs, beside what is defined: the drift a host restart (or a crash) leaves behind.

libvirt keeps definitions across a restart, not what ran: an instance the inventory says
runs may be stopped, a network inactive; and nbcloud's host-side pieces do not survive at
all (an HAProxy per balancer, the nft rules of port forwards). `runtime_drift` names each
such difference between the inventory and the live state; `stopped`, `inactive` and
`balancer_down` are the tests the plan (compare.py) uses to repair a stack's own.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbcloud.inventory import Resource
    from nbcloud.plan.model import LiveState

STOPPED = "stopped behind nbcloud's back (the inventory says it runs)"
INACTIVE = "inactive behind nbcloud's back (its guests have no network)"
BALANCER_DOWN = "its HAProxy is not running"
MOVE = "host "        # an instance on another host than its stack's `host:` names
#: the fields of an instance's record that say where placement put it (several hosts)
PLACEMENT = ("host", "group")


def stopped(record: Resource | None, entry: dict | None) -> bool:
    """An instance the inventory says runs, defined in libvirt but not running."""
    return record is not None and record.state == "running" and entry is not None and \
        entry.get("running") is False


def inactive(entry: dict | None) -> bool:
    return entry is not None and entry.get("active") is False


def balancer_down(name: str, live: LiveState) -> bool:
    """A balancer whose process is not running (False, not None: None is "not a process
    here", the test driver)."""
    return live.balancers_running.get(name) is False


def dns_address(spec: dict, hosts: dict[str, str]) -> str:
    """The address record `spec` (an inventory "dns" spec) should answer now, or ''."""
    if spec["type"] == "A":
        return spec["value"]
    if spec["type"] == "FAILOVER":
        return spec.get("current", "")
    return hosts.get(spec["value"], "")


def runtime_drift(recorded: list[Resource], live: LiveState) -> list[tuple[str, str, str, str]]:
    """(kind, name, stack, what) for each recorded resource that should run and does not."""
    out = []
    for r in recorded:
        if r.kind == "instance" and stopped(r, live.domains.get(r.name)):
            out.append((r.kind, r.name, r.stack, f"{STOPPED}: apply or `%cloud instance "
                                                 f"start {r.name}` starts it"))
        elif r.kind == "network" and inactive(live.networks.get(r.name)):
            out.append((r.kind, r.name, r.stack, INACTIVE))
        elif r.kind == "loadbalancer" and balancer_down(r.name, live):
            out.append((r.kind, r.name, r.stack, f"{BALANCER_DOWN}: apply, `%cloud lb show "
                                                 f"{r.name}` or the host agent restarts it"))
        elif r.kind == "floating" and live.forwards is not None and \
                r.name not in live.forwards:
            out.append((r.kind, r.name, r.stack, "its forwarding rules are missing (nft "
                                                 "rules do not survive a host restart): "
                                                 "`%cloud floating restore`"))
        elif r.kind == "dns":
            net = r.spec["network"]
            hosts = live.dns.get(net)
            want = dns_address(r.spec, hosts or {})
            if hosts is not None and want and hosts.get(r.spec["name"]) != want:
                out.append((r.kind, r.name, r.stack, f"not answered by network {net}'s "
                                                     f"DNS (should be {want}): `%cloud dns "
                                                     f"list {net}` puts it back"))
        elif r.kind == "ipool":
            out += [(r.kind, r.name, r.stack, f"member {m} was deleted behind nbcloud's "
                                              "back") for m in r.spec.get("members", [])
                    if m not in live.domains]
    return out
