"""`%cloud volume create NAME --size 1G [--tier ssd|hdd] [--pool P] | attach VOL INSTANCE |
detach VOL [INSTANCE] | resize VOL --size 2G | delete VOL | list`."""
from __future__ import annotations

from nbcloud.core.display import Message, Table
from nbcloud.core.spec import TIERS, format_size
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    vol = verbs(sub, name)
    cr = vol.add_parser("create")
    cr.add_argument("name")
    cr.add_argument("--size", required=True)
    cr.add_argument("--tier", default="ssd", choices=TIERS)
    cr.add_argument("--pool")
    at = vol.add_parser("attach")
    at.add_argument("name")
    at.add_argument("instance")
    de = vol.add_parser("detach")
    de.add_argument("name")
    de.add_argument("instance", nargs="?")
    rs = vol.add_parser("resize")
    rs.add_argument("name")
    rs.add_argument("--size", required=True)
    vol.add_parser("delete").add_argument("name")
    vol.add_parser("list")
    vol.add_parser("show").add_argument("name")


def table(volumes, title: str = "volumes") -> Table:
    rows = []
    for v in volumes:
        info = v.info
        rows.append((v.name, v.tier or "-", format_size(info.capacity),
                     f"{info.allocation / 2**20:.1f}M", info.pool, v.attached_to or "-"))
    return Table(["name", "tier", "size", "used", "pool", "attached to"], rows, title)


def run(cloud, args, namespace):
    vols = cloud.volumes
    if args.verb == "create":
        return vols.create(args.name, size=args.size, tier=args.tier, pool=args.pool)
    if args.verb == "attach":
        vols.attach(args.name, args.instance)
        return Message(f"attached volume {args.name} to {args.instance}")
    if args.verb == "detach":
        vols.detach(args.name, args.instance)
        return Message(f"detached volume {args.name}")
    if args.verb == "resize":
        return vols.resize(args.name, args.size)
    if args.verb == "delete":
        vols.delete(args.name)
        return Message(f"deleted volume {args.name}")
    if args.verb == "show":
        return vols.get(args.name)
    return table(vols.list())
