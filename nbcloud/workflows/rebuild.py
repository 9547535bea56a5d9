"""Rebuild the inventory from the metadata nbcloud keeps on libvirt objects, and settle
operations whose process died between intent and outcome.

Instances carry their stack in their metadata, so they come back exactly. Networks and
volumes carry no stack: they come back in `adhoc`, marked `recovered`, and the first stack
that declares one of them claims it (stacks.py) instead of refusing it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from nbcloud.services.networks import DEFAULT_NETWORK, is_managed

if TYPE_CHECKING:
    from nbcloud.api import Cloud


def rebuild(cloud: Cloud) -> list[str]:
    """Put a row for every object of this host nbcloud can tell it made; returns a note
    per kind."""
    inv, uri = cloud.inventory, cloud.uri
    domains, _others = cloud.backend.domains_live()
    attached: dict[str, str] = {}
    for name, entry in domains.items():
        meta = entry["meta"]
        vols = [v for v in meta.get("volumes", "").split(",") if v]
        attached.update(dict.fromkeys(vols, name))
        inv.put(uri, "instance", name, uuid=entry.get("uuid"),
                state="running" if entry["running"] else "stopped",
                stack=meta.get("stack") or "adhoc",
                spec={"image": meta.get("image", ""), "flavor": meta.get("flavor", ""),
                      "networks": [n for n in meta.get("networks", "").split(",") if n],
                      "volumes": vols})
    nets = [i for i in cloud.backend.network_infos()
            if is_managed(i) and i.name != DEFAULT_NETWORK]
    for info in nets:
        inv.put(uri, "network", info.name, state="active",
                spec={"cidr": str(info.network), "mode": info.mode, "bridge": info.bridge,
                      "recovered": True})
    vols = cloud.volumes._all()
    for name, info in vols.items():
        kind = cloud.volumes._kind(info)
        spec = {"pool": info.pool, "size": info.capacity, "recovered": True}
        if kind == "volume":
            spec.update(tier=info.name.split(".")[-2], attached_to=attached.get(name, ""))
        inv.put(uri, kind, name, spec=spec,
                state="attached" if attached.get(name) else "available")
    return [f"rebuilt {len(domains)} instances, {len(nets)} networks and {len(vols)} "
            "volumes from libvirt metadata"]


def settle_interrupted(cloud: Cloud) -> list[str]:
    """Mark 'interrupted' the operations whose process ended before their outcome."""
    notes = []
    for op in cloud.inventory.stale():
        what = f"{op['verb']} {op['kind']} {op['name']}"
        cloud.inventory.resolve(op["id"], "interrupted",
                                "its process ended before the outcome was recorded")
        notes.append(f"operation {op['id']} ({what}) was interrupted: `%cloud recover "
                     f"{op['id']}` rolls it back, `--resume` finishes it")
    return notes


def recover(cloud: Cloud) -> list[str]:
    """On open: rebuild a replaced or empty inventory if libvirt has nbcloud objects, then
    settle interrupted operations. Returns one line per thing done."""
    inv = cloud.inventory
    notes = []
    if inv.rebuilt:
        notes.append(f"the inventory was corrupt: moved aside to {inv.moved_aside}")
    if inv.rebuilt or not inv.resources(cloud.uri):
        if inv.rebuilt or cloud.backend.managed():
            notes += rebuild(cloud)
    return notes + settle_interrupted(cloud)


def _reserved_macs(cloud: Cloud, network: str, hostname: str) -> list[str]:
    """MACs of `hostname`'s address reservations on `network`, live or only defined."""
    return [r.mac for r, _live in cloud.backend.host_reservations(network, hostname)]


def rollback(cloud: Cloud, op_id: int) -> list[str]:
    """Undo what interrupted operation `op_id` half-made (interrupted.py); returns what
    was removed."""
    from nbcloud.workflows.settle import settle
    return settle(cloud, op_id, "rollback")
