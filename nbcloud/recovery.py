"""Rebuild the inventory from the metadata nbcloud keeps on libvirt objects, and settle
operations whose process died between intent and outcome.

Instances carry their stack in their metadata, so they come back exactly. Networks and
volumes carry no stack: they come back in `adhoc`, marked `recovered`, and the first stack
that declares one of them claims it (stacks.py) instead of refusing it.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .networks import DEFAULT_NETWORK, is_managed

if TYPE_CHECKING:
    from .api import Cloud


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
        notes.append(f"operation {op['id']} ({what}) was interrupted: check it with "
                     "`%cloud drift` and `%cloud ls`")
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
    import libvirt

    from .backend.libvirt import xml as lx
    try:
        net = cloud.backend.conn.networkLookupByName(network)
        descs = [net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)]
        if net.isActive():
            descs.append(net.XMLDesc(0))
    except libvirt.libvirtError:
        return []
    macs: list[str] = []
    for desc in descs:
        for mac, _ip, name in lx.parse_network(desc).hosts:
            if name == hostname and mac.lower() not in macs:
                macs.append(mac.lower())
    return macs


def rollback(cloud: Cloud, op_id: int) -> list[str]:
    """Undo what an interrupted `create instance` half-made: its domain (only if it
    carries nbcloud's mark), its seed/root/local volumes, its address reservations and its
    inventory row; the operation is then recorded 'rolled back'. Returns what was removed.

    Only for an operation that is interrupted (or 'started' by a process that is gone);
    one still under way in a live process is refused."""
    from .errors import CloudError, NotFound
    from .instances import INSTANCE_POOL

    inv, backend = cloud.inventory, cloud.backend
    op = inv.operation_by_id(op_id)
    if op is None:
        raise NotFound(f"no operation {op_id} in the inventory")
    if op["result"] == "started" and op_id not in {o["id"] for o in inv.stale()}:
        raise CloudError(f"operation {op_id} is still under way (process {op['pid']})")
    if op["result"] not in ("started", "interrupted"):
        raise CloudError(f"operation {op_id} is {op['result']!r}, not interrupted: "
                         "nothing to recover")
    if (op["verb"], op["kind"]) != ("create", "instance"):
        raise CloudError(f"rollback of {op['verb']} {op['kind']} is not supported: only "
                         "an interrupted instance create is")
    name, args = op["name"], json.loads(op["args"] or "{}")
    done: list[str] = []
    if backend.exists(name):
        backend.metadata(name)  # NotManaged: a domain without our mark is never touched
        meta = backend.delete(name)
        cloud.volumes.released(name, meta)
        done.append(f"domain {name}")
    for suffix in ("seed.iso", "root.qcow2", "local.qcow2"):
        vol = f"{name}.{suffix}"
        if backend.delete_volume(INSTANCE_POOL, vol):
            done.append(f"volume {vol}")
    networks = args.get("networks") or [i.name for i in backend.network_infos()]
    for net in networks:
        for mac in _reserved_macs(cloud, net, name):
            if backend.release_address(net, mac):
                done.append(f"address reservation {mac} on {net}")
    if any(r.name == name for r in inv.resources(cloud.uri, "instance")):
        inv.remove(cloud.uri, "instance", name)
        done.append(f"inventory row instance {name}")
    inv.resolve(op_id, "rolled back", "removed: " + (", ".join(done) or "nothing"),
                was=("started", "interrupted"))
    return done
