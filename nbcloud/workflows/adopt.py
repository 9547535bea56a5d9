"""`cloud.adopt(name, kind, stack)`: bring an object made outside nbcloud (with virsh,
say) into the inventory, so that plan, drift and destroy manage it from then on.

An instance gets nbcloud's metadata mark, written from what its XML shows (vCPUs and
memory as a flavor, NICs as networks and MACs), with `adopted` set: its image is unknown,
so a cell declaring it does not replace it over the image. Its disks stay its own: a
destroy undefines the domain and leaves them. libvirt 9.0 keeps no metadata on networks,
so an adopted network is marked in the inventory only (a rebuilt inventory forgets it).
A volume can be adopted only if its file is named as nbcloud names them.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nbcloud.core.errors import AlreadyExists, CloudError, InvalidSpec, NotFound
from nbcloud.core.flavors import CATALOGUE
from nbcloud.core.spec import check_name
from nbcloud.workflows import hostkeys

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services

KINDS = ("instance", "network", "volume")


def flavor_for(vcpus: int, memory: int) -> str:
    """The catalogue flavor of that size with a whole CPU (an adopted domain has no CPU
    cap) and no local disk, else a custom one."""
    for flavor in CATALOGUE.values():
        if (flavor.vcpus, flavor.memory, flavor.cpu_share, flavor.local_disk) == \
                (vcpus, memory, 1.0, 0):
            return flavor.name
    return f"custom-{vcpus}c-{memory >> 20}m"


def adopt(cloud: Services, name: str, kind: str = "instance", stack: str = "adhoc", *,
          ssh: bool = False, user: str | None = None, key: str | None = None) -> str:
    """Adopt libvirt object `name` of `kind` into stack `stack`; returns what was done.
    `ssh` also pins an instance's SSH host key (hostkeys.py), for login as `user`
    (root) with login key `key` (default); for an instance adopted already, only that."""
    if kind not in KINDS:
        raise InvalidSpec(f"adopt: kind {kind!r} is not one of {', '.join(KINDS)}")
    if (user is not None or key is not None) and not ssh:
        raise InvalidSpec("adopt: --user and --key go with --ssh")
    if ssh and kind != "instance":
        raise InvalidSpec(f"adopt: --ssh is for instances, not a {kind}")
    check_name(name, f"{kind} name")
    check_name(stack, "stack name")
    cloud.provider.require("adopt")
    login = None
    if ssh:
        login = (user or "root", key or "default")
        hostkeys.check_login(*login)
    recorded = {r.name: r for r in cloud.inventory.all(kind)}
    if name in recorded and login and recorded[name].spec.get("adopted"):
        with cloud.inventory.operation("adopt", kind, name,
                                       stack=recorded[name].stack) as op:
            op.detail = _pin_adopted(cloud, name, login)
        return op.detail
    if name in recorded:
        made = " (nbcloud made it, so it pinned its host key then)" if login else ""
        raise AlreadyExists(f"{kind} {name!r} is in the inventory already (stack "
                            f"{recorded[name].stack!r}): nothing to adopt{made}")
    with cloud.inventory.operation("adopt", kind, name, stack=stack) as op:
        if kind == "instance":
            op.detail = _instance(cloud, name, stack, login)
        else:
            op.detail = {"network": _network, "volume": _volume}[kind](cloud, name, stack)
    return op.detail


def _pin_adopted(cloud: Services, name: str, login: tuple[str, str]) -> str:
    """Pin the host key of instance `name`, adopted earlier without --ssh (or again)."""
    meta = cloud.provider.metadata(name)
    values, shown = hostkeys.pin(cloud, name, cloud.provider.domain_facts(name), *login)
    cloud.provider.set_metadata(name, {**meta, **values})
    cloud.instances.close_session(name)   # a session from before the new pin must go
    return shown


def _instance(cloud: Services, name: str, stack: str,
              login: tuple[str, str] | None = None) -> str:
    provider = cloud.provider
    facts = provider.domain_facts(name)   # NotFound
    flavor = flavor_for(facts["vcpus"], facts["memory"])
    nets = [n for n, _mac in facts["nics"]]
    if facts["marked"]:
        # nbcloud's already (made from another inventory): record it as its mark says
        meta = provider.metadata(name)
        done = f"recorded instance {name} (it carries nbcloud's mark already)"
        if login and meta.get("adopted"):   # adopted by another inventory
            done = f"{done}; {_pin_adopted(cloud, name, login)}"
    else:
        meta = {"kind": "instance", "stack": stack, "image": "", "flavor": flavor,
                "networks": ",".join(nets), "mac": ",".join(m for _n, m in facts["nics"]),
                "ip": "", "ips": "", "key": "", "volumes": "", "adopted": "1",
                "created": str(int(time.time()))}
        shown = ""
        if login:   # the key is fetched before anything is written
            values, shown = hostkeys.pin(cloud, name, facts, *login)
            meta.update(values)
        provider.mark_domain(name, meta)
        done = (f"adopted instance {name} into stack {stack} as {flavor} on "
                f"{','.join(nets) or 'no network'}" + (f"; {shown}" if shown else ""))
    cloud.inventory.put(
        "instance", name, uuid=facts["uuid"], stack=meta.get("stack") or stack,
        state="running" if facts["running"] else "stopped",
        spec={"image": meta.get("image", ""), "flavor": meta.get("flavor", flavor),
              "networks": nets, "volumes": [], "adopted": True})
    return done


def _network(cloud: Services, name: str, stack: str) -> str:
    info = next((i for i in cloud.provider.network_infos() if i.name == name), None)
    if info is None:
        raise NotFound(f"network {name!r} does not exist, or has no IPv4 address (nbcloud "
                       "manages IPv4 networks only)")
    cloud.inventory.put("network", name, stack=stack,
                        state="active" if cloud.provider.network_active(name) else "inactive",
                        spec={"cidr": str(info.network), "mode": info.mode,
                              "bridge": info.bridge,
                              "adopted": not cloud.provider.network_managed(info)})
    return f"adopted network {name} ({info.network} {info.mode}) into stack {stack}"


def _volume(cloud: Services, name: str, stack: str) -> str:
    info = cloud.volumes.all().get(name)
    if info is None or info.kind == "cdrom":
        raise CloudError(f"volume {name!r}: nbcloud adopts volumes whose file is named "
                         f"{name}.ssd.qcow2 or {name}.hdd.qcow2 in a pool (libvirt cannot "
                         "rename a volume): copy the data into a `%cloud volume create`d one")
    users = cloud.provider.volume_users(info)
    cloud.volumes.record(name, "attached" if users else "available", tier=info.tier,
                         pool=info.pool, size=info.capacity,
                         attached_to=users[0][0] if users else "", stack=stack)
    return (f"adopted volume {name} ({name}.{info.tier}.qcow2 in {info.pool}) into stack "
            f"{stack}")
