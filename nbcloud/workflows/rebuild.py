"""Rebuild the inventory from the metadata nbcloud keeps on libvirt objects, and settle
operations whose process died between intent and outcome.

Instances carry their stack in their metadata, so they come back exactly. Networks and
volumes carry no stack: they come back in `adhoc`, marked `recovered`, and the first stack
that declares one of them claims it (stacks.py) instead of refusing it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services


def rebuild(cloud: Services) -> list[str]:
    """Put a row for every object of this host nbcloud can tell it made; returns a note
    per kind."""
    inv = cloud.inventory
    domains, _others = cloud.provider.domains_live()
    attached: dict[str, str] = {}
    for name, entry in domains.items():
        meta = entry["meta"]
        vols = [v for v in meta.get("volumes", "").split(",") if v]
        attached.update(dict.fromkeys(vols, name))
        inv.put("instance", name, uuid=entry.get("uuid"),
                state="running" if entry["running"] else "stopped",
                stack=meta.get("stack") or "adhoc",
                spec={"image": meta.get("image", ""), "flavor": meta.get("flavor", ""),
                      "networks": [n for n in meta.get("networks", "").split(",") if n],
                      "volumes": vols})
    nets = [i for i in cloud.provider.network_infos()
            if cloud.provider.network_managed(i) and i.name != cloud.provider.default_network]
    for info in nets:
        inv.put("network", info.name, state="active",
                spec={"cidr": str(info.network), "mode": info.mode, "bridge": info.bridge,
                      "recovered": True})
    vols = cloud.volumes.all()
    for name, info in vols.items():
        kind = cloud.volumes.inventory_kind(info)
        spec = {"pool": info.pool, "size": info.capacity, "recovered": True}
        if kind == "volume":
            spec.update(tier=info.tier, attached_to=attached.get(name, ""))
        inv.put(kind, name, spec=spec,
                state="attached" if attached.get(name) else "available")
    return [f"rebuilt {len(domains)} instances, {len(nets)} networks and {len(vols)} "
            "volumes from libvirt metadata"]


def settle_interrupted(cloud: Services) -> list[str]:
    """Mark 'interrupted' the operations whose process ended before their outcome."""
    notes = []
    for op in cloud.inventory.stale():
        what = f"{op['verb']} {op['kind']} {op['name']}"
        cloud.inventory.resolve(op["id"], "interrupted",
                                "its process ended before the outcome was recorded")
        notes.append(f"operation {op['id']} ({what}) was interrupted: `%cloud recover "
                     f"{op['id']}` rolls it back, `--resume` finishes it")
    return notes


def recover(cloud: Services, rebuild_empty: bool = True) -> list[str]:
    """On open: rebuild a replaced (or, with `rebuild_empty`, an empty) inventory if
    libvirt has nbcloud objects, then settle interrupted operations. Returns one line per
    thing done."""
    inv = cloud.inventory
    notes = []
    if inv.rebuilt:
        notes.append(f"the inventory was corrupt: moved aside to {inv.inventory.moved_aside}")
    # an inventory a host agent serves is in use, not lost: empty, it stays so
    if inv.rebuilt or (rebuild_empty and not inv.all() and inv.agent() is None):
        if inv.rebuilt or cloud.provider.managed():
            notes += rebuild(cloud)
    return notes + settle_interrupted(cloud)


def _reserved_macs(cloud: Services, network: str, hostname: str) -> list[str]:
    """MACs of `hostname`'s address reservations on `network`, live or only defined."""
    return [r.mac for r, _live in cloud.provider.host_reservations(network, hostname)]


def rollback(cloud: Services, op_id: int) -> list[str]:
    """Undo what interrupted operation `op_id` half-made (interrupted.py); returns what
    was removed."""
    from nbcloud.workflows.settle import settle
    return settle(cloud, op_id, "rollback")
