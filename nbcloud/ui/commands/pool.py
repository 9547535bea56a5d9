"""`%cloud pool create NAME --path DIR | list | delete NAME`."""
from __future__ import annotations

from nbcloud.core.display import Message, Table
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    pool = verbs(sub, name)
    cr = pool.add_parser("create")
    cr.add_argument("name")
    cr.add_argument("--path", required=True)
    pool.add_parser("list")
    pool.add_parser("delete").add_argument("name")


def run(cloud, args, namespace):
    if args.verb == "create":
        return cloud.pools.create(args.name, args.path)
    if args.verb == "delete":
        cloud.pools.delete(args.name)
        return Message(f"deleted pool {args.name} (its directory is left on disk)")
    return Table(["name", "path", "state", "capacity", "allocation", "available", "volumes"],
                 [p.row() for p in cloud.pools.list()], "storage pools")
