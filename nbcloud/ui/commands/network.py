"""`%cloud network create NAME --cidr CIDR [--mode M] | list | show | leases NAME |
delete NAME [--force]`."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    net = verbs(sub, name)
    cr = net.add_parser("create")
    cr.add_argument("name")
    cr.add_argument("--cidr", required=True)
    cr.add_argument("--mode", default="nat", help="nat, isolated, routed or open")
    net.add_parser("list")
    for verb in ("show", "leases"):
        net.add_parser(verb).add_argument("name")
    de = net.add_parser("delete")
    de.add_argument("name")
    de.add_argument("--force", action="store_true",
                    help="also delete nbcloud's default network")


def run(cloud, args, namespace):
    if args.verb == "create":
        return cloud.networks.create(args.name, args.cidr, args.mode)
    if args.verb == "list":
        return cloud.networks.table()
    if args.verb == "show":
        return cloud.networks.get(args.name)
    if args.verb == "leases":
        return cloud.networks.leases(args.name)
    cloud.networks.delete(args.name, force=args.force)
    return Message(f"deleted network {args.name}")
