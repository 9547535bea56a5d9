"""`%cloud flavor list | create NAME --vcpus N --memory M [--disk G] [--share F]
[--ephemeral G] | delete NAME` (create and delete: an OpenStack admin's)."""
from __future__ import annotations

from nbcloud.core.display import Message, Table
from nbcloud.core.spec import format_size
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    fl = verbs(sub, name)
    fl.add_parser("list")
    create = fl.add_parser("create")
    create.add_argument("name")
    create.add_argument("--vcpus", required=True)
    create.add_argument("--memory", required=True)
    create.add_argument("--disk", default="1G", help="root disk (default 1G)")
    create.add_argument("--share", default="1", help="CPU share of each vCPU, like 0.25")
    create.add_argument("--ephemeral", default="0", help="an extra local disk, like 2G")
    fl.add_parser("delete").add_argument("name")


def run(cloud, args, namespace):
    if args.verb == "create":
        return table([cloud.create_flavor(args.name, args.vcpus, args.memory,
                                          disk=args.disk, share=args.share,
                                          ephemeral=args.ephemeral)])
    if args.verb == "delete":
        cloud.delete_flavor(args.name)
        return Message(f"deleted flavor {args.name}")
    return table(cloud.flavors())


def table(flavors) -> Table:
    return Table(["flavor", "family", "vcpus", "memory", "cpu share", "local disk"],
                 [(f.name, f.family, f.vcpus, format_size(f.memory), f"{f.cpu_share:.0%}",
                   format_size(f.local_disk) if f.local_disk else "-")
                  for f in flavors], "flavors")
