"""Settle an interrupted operation: roll back what it half-made, or resume it to the end.

An operation is interrupted when its process died between intent and outcome (rebuild.py
marks it so when the inventory is next opened), or when the libvirt daemon died under it
and its own undo failed too. Each verb that can be interrupted has a rollback and a resume
here. Both look at what is there, not at how far the operation got, so either can run
again after a second interruption; objects without nbcloud's mark are never touched.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core.errors import CloudError, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from nbcloud.services.catalog import Services

HOW = ("rollback", "resume")
RESULTS = {"rollback": "rolled back", "resume": "resumed"}


def _forget_row(cloud: Services, kind: str, name: str) -> list[str]:
    """Remove `name`'s inventory row of `kind` if there is one; say so."""
    if cloud.inventory.get(kind, name) is None:
        return []
    cloud.inventory.remove(kind, name)
    return [f"inventory row {kind} {name}"]


def interrupted(cloud: Services, op_id: int) -> dict:
    """Operation `op_id`, if it is interrupted (or 'started' by a process that is gone)."""
    inv = cloud.inventory
    op = inv.operation_by_id(op_id)
    if op is None:
        raise NotFound(f"no operation {op_id} in the inventory")
    if op["result"] == "started" and op_id not in {o["id"] for o in inv.stale()}:
        raise CloudError(f"operation {op_id} is still under way (process {op['pid']})")
    if op["result"] not in ("started", "interrupted"):
        raise CloudError(f"operation {op_id} is {op['result']!r}, not interrupted: "
                         "nothing to recover")
    return op


def settle(cloud: Services, op_id: int, how: str = "rollback") -> list[str]:
    """Roll back or resume interrupted operation `op_id`; returns what was done, and
    records the operation 'rolled back' or 'resumed'."""
    if how not in HOW:
        raise CloudError(f"recover: {how!r} is not a way to settle an operation; use "
                         "'rollback' (undo what it half-made) or 'resume' (finish it)")
    op = interrupted(cloud, op_id)
    steps = VERBS.get((op["verb"], op["kind"]))
    if steps is None:
        known = ", ".join(f"{v} {k}" for v, k in VERBS)
        raise CloudError(f"recover: an interrupted {op['verb']} {op['kind']} cannot be "
                         f"settled automatically (only {known}): check `%cloud drift`")
    done = steps[HOW.index(how)](cloud, op["name"], json.loads(op["args"] or "{}"))
    cloud.inventory.resolve(op_id, RESULTS[how], "; ".join(done) or "nothing was left",
                            was=("started", "interrupted"))
    return done


# ----- instances ------------------------------------------------------------------------------
def _instance_leftovers(cloud: Services, name: str, networks: list[str]) -> list[str]:
    """Remove what an instance whose domain is gone leaves: its disks, address
    reservations, volume attachments and inventory row."""
    inv, provider = cloud.inventory, cloud.provider
    done = [f"volume {f}" for f in provider.remove_instance_files(name)]
    for net in networks or [i.name for i in provider.network_infos()]:
        for r, _live in provider.host_reservations(net, name):
            if provider.release_address(net, r.mac):
                done.append(f"address reservation {r.mac} on {net}")
    for r in inv.all("volume"):
        if r.spec.get("attached_to") == name:
            cloud.volumes.record(r.name, "available", attached_to="", target="")
            done.append(f"volume {r.name} marked available")
    return done + _forget_row(cloud, "instance", name)


def _delete_domain(cloud: Services, name: str) -> tuple[list[str], list[str]]:
    """Delete domain `name` if there is one (NotManaged if it has no mark); returns (what
    was done, the networks its metadata named)."""
    if not cloud.provider.exists(name):
        return [], []
    meta = cloud.provider.delete(name)
    cloud.volumes.released(meta.get("volumes", ""))
    return [f"domain {name}"], [n for n in meta.get("networks", "").split(",") if n]


def _record_instance(cloud: Services, name: str) -> str:
    meta = cloud.provider.metadata(name)
    state = cloud.provider.state(name)
    cloud.inventory.put(
        "instance", name, uuid=cloud.provider.uuid(name), state=state,
        stack=meta.get("stack") or "adhoc",
        spec={"image": meta.get("image", ""), "flavor": meta.get("flavor", ""),
              "networks": [n for n in meta.get("networks", "").split(",") if n],
              "volumes": [v for v in meta.get("volumes", "").split(",") if v]})
    return f"inventory row instance {name} ({state})"


def rollback_create_instance(cloud: Services, name: str, args: dict) -> list[str]:
    done, nets = _delete_domain(cloud, name)
    return done + _instance_leftovers(cloud, name, args.get("networks") or nets)


def resume_create_instance(cloud: Services, name: str, args: dict) -> list[str]:
    """A defined domain is started and recorded; short of that, what is there is removed
    and the instance created again from the operation's arguments."""
    provider = cloud.provider
    if not provider.exists(name):
        done = _instance_leftovers(cloud, name, args.get("networks", []))
        cloud.instances.create(name, args.get("image", "tiny"), args.get("flavor", "t.nano"),
                               args.get("networks") or None, wait=False,
                               stack=args.get("stack", "adhoc"))
        return done + [f"created instance {name} again"]
    meta = provider.metadata(name)  # NotManaged: never touched
    done = []
    for net in filter(None, meta.get("networks", "").split(",")):
        for r, live in provider.host_reservations(net, name):
            if not live:  # the create died before telling dnsmasq
                provider.publish(r).result()
                done.append(f"published {r.ip} on {net}")
    if provider.state(name) != "running":
        provider.start(name)
        done.append(f"started domain {name}")
    return done + [_record_instance(cloud, name)]


def rollback_delete_instance(cloud: Services, name: str, args: dict) -> list[str]:
    if not cloud.provider.exists(name):
        raise CloudError(f"the delete of instance {name!r} cannot be rolled back: its "
                         "domain is undefined already; resume it to finish the delete")
    return ["kept domain " + name, _record_instance(cloud, name)]


def resume_delete_instance(cloud: Services, name: str, args: dict) -> list[str]:
    done, nets = _delete_domain(cloud, name)
    return done + _instance_leftovers(cloud, name, nets)


# ----- volumes ----------------------------------------------------------------------------------
def _volume_file(cloud: Services, name: str):
    return cloud.volumes.all().get(name)


def rollback_create_volume(cloud: Services, name: str, args: dict) -> list[str]:
    done = []
    info = _volume_file(cloud, name)
    if info is not None:
        if cloud.provider.volume_users(info):
            raise CloudError(f"volume {name!r} is attached already: detach it, then delete "
                             "it, or resume the create")
        cloud.provider.delete_data_volume(info)
        done.append(f"volume {Path(info.path).name} in pool {info.pool}")
    return done + _forget_row(cloud, "volume", name)


def resume_create_volume(cloud: Services, name: str, args: dict) -> list[str]:
    tier = args.get("tier", "ssd")
    info = _volume_file(cloud, name)
    if info is None:
        pool = args.get("pool")
        cloud.volumes.create(name, args.get("size", "1G"), tier,
                             None if pool in (None, *cloud.provider.own_pools()) else pool)
        return [f"created volume {name} again"]
    cloud.volumes.record(name, "available", tier=tier, pool=info.pool, size=info.capacity,
                         attached_to="")
    return [f"inventory row volume {name}"]


def rollback_delete_volume(cloud: Services, name: str, args: dict) -> list[str]:
    info = _volume_file(cloud, name)
    if info is None:
        raise CloudError(f"the delete of volume {name!r} cannot be rolled back: its file "
                         "is gone already; resume it to finish the delete")
    cloud.volumes.record(name, "available", tier=info.tier, pool=info.pool,
                         size=info.capacity, attached_to="")
    return [f"kept volume {name}"]


def resume_delete_volume(cloud: Services, name: str, args: dict) -> list[str]:
    info = _volume_file(cloud, name)
    if info is not None:
        cloud.volumes.delete(name)
        return [f"volume {name}"]
    return _forget_row(cloud, "volume", name)


# ----- networks ---------------------------------------------------------------------------------
def _managed_network(cloud: Services, name: str):
    info = next((i for i in cloud.provider.network_infos() if i.name == name), None)
    if info is not None and not cloud.provider.network_managed(info):
        raise CloudError(f"network {name!r} was not made by nbcloud: nbcloud leaves it alone")
    return info


def rollback_create_network(cloud: Services, name: str, args: dict) -> list[str]:
    done = []
    if _managed_network(cloud, name) is not None:
        users = cloud.networks.attached(name)
        if users:
            raise CloudError(f"network {name!r} is in use by {', '.join(users)} already: "
                             "resume the create instead")
        cloud.provider.delete_network(name)
        done.append(f"network {name}")
    return done + _forget_row(cloud, "network", name)


def resume_create_network(cloud: Services, name: str, args: dict) -> list[str]:
    """Define (if need be), start and autostart the network the operation asked for."""
    info = _managed_network(cloud, name)
    if info is None and not args.get("bridge"):
        raise CloudError(f"operation for network {name!r} does not say its bridge: roll "
                         "it back and create the network again")
    bridge = info.bridge if info is not None else args["bridge"]
    changed = cloud.provider.ensure_network(name, args["cidr"], args.get("mode", "nat"),
                                           bridge)
    cloud.inventory.put("network", name, state="active",
                        stack=args.get("stack", "adhoc"),
                        spec={"cidr": args["cidr"], "mode": args.get("mode", "nat"),
                              "bridge": bridge})
    return ([f"network {name} defined and started"] if changed else []) + \
        [f"inventory row network {name}"]


def rollback_delete_network(cloud: Services, name: str, args: dict) -> list[str]:
    info = _managed_network(cloud, name)
    if info is None:
        raise CloudError(f"the delete of network {name!r} cannot be rolled back: it is "
                         "undefined already; resume it to finish the delete")
    cloud.provider.ensure_network(name, str(info.network), info.mode, info.bridge)
    return [f"kept network {name}"]


def resume_delete_network(cloud: Services, name: str, args: dict) -> list[str]:
    done = []
    if _managed_network(cloud, name) is not None:
        cloud.provider.delete_network(name)
        done.append(f"network {name}")
    return done + _forget_row(cloud, "network", name)


VERBS: dict[tuple[str, str], tuple[Callable, Callable]] = {
    ("create", "instance"): (rollback_create_instance, resume_create_instance),
    ("delete", "instance"): (rollback_delete_instance, resume_delete_instance),
    ("create", "volume"): (rollback_create_volume, resume_create_volume),
    ("delete", "volume"): (rollback_delete_volume, resume_delete_volume),
    ("create", "network"): (rollback_create_network, resume_create_network),
    ("delete", "network"): (rollback_delete_network, resume_delete_network),
}
