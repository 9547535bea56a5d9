"""`%cloud ipool create NAME [--image tiny] [--flavor F] [--network N] --size N
[--user-data FILE_OR_$VAR] [--secgroup G ...] [--lb LB] [--scale-out RULE] [--scale-in RULE]
[--min N] [--max N] | scale NAME N | list | show NAME | delete NAME`.

A RULE is METRIC>VALUE for DURATION, like "cpu>70% for 1m" or "cpu<20% for 5m"."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.ui.commands.base import verbs
from nbcloud.ui.commands.instance import read_user_data


def add_parser(sub, name: str) -> None:
    ip = verbs(sub, name)
    cr = ip.add_parser("create")
    cr.add_argument("name")
    cr.add_argument("--image", default="tiny")
    cr.add_argument("--flavor", default="t.nano")
    cr.add_argument("--network")  # default: nbcloud, or user-mode networking on a session
    cr.add_argument("--size", default="1")
    cr.add_argument("--user-data", dest="user_data")
    cr.add_argument("--secgroup", action="append", default=[])
    cr.add_argument("--lb")
    cr.add_argument("--scale-out", dest="scale_out")
    cr.add_argument("--scale-in", dest="scale_in")
    cr.add_argument("--min", dest="min_size")
    cr.add_argument("--max", dest="max_size")
    sc = ip.add_parser("scale")
    sc.add_argument("name")
    sc.add_argument("size")
    ip.add_parser("list")
    ip.add_parser("show").add_argument("name")
    ip.add_parser("delete").add_argument("name")


def run(cloud, args, namespace):
    pools = cloud.ipools
    if args.verb == "create":
        return pools.create(args.name, args.image, args.flavor, args.network, args.size,
                            user_data=read_user_data(args.user_data, namespace),
                            secgroups=args.secgroup, lb=args.lb, scale_out=args.scale_out,
                            scale_in=args.scale_in, min_size=args.min_size,
                            max_size=args.max_size)
    if args.verb == "scale":
        return pools.scale(args.name, args.size)
    if args.verb == "list":
        return pools.table()
    if args.verb == "show":
        return pools.get(args.name)
    pools.delete(args.name)
    return Message(f"deleted instance pool {args.name} and its members")
