"""`%cloud lb create NAME --network N [--port 80] [--members 'web-*' ...]
[--member-port P] [--algorithm roundrobin|leastconn] [--keep-client-address] | list | show NAME |
delete NAME | member add NAME INSTANCE... | member remove NAME INSTANCE...`."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.services.loadbalancers import ALGORITHMS
from nbcloud.ui.commands.base import Parser, verbs


def add_parser(sub, name: str) -> None:
    lb = verbs(sub, name)
    cr = lb.add_parser("create")
    cr.add_argument("name")
    cr.add_argument("--network", required=True)
    cr.add_argument("--port", default="80")
    cr.add_argument("--member-port", help="the port the members serve on (default: --port)")
    cr.add_argument("--members", nargs="+", default=[],
                    help="instance names or patterns like 'web-*'")
    cr.add_argument("--algorithm", default="roundrobin", choices=ALGORITHMS)
    cr.add_argument("--keep-client-address", action="store_true")
    lb.add_parser("list")
    lb.add_parser("show").add_argument("name")
    lb.add_parser("delete").add_argument("name")
    member = lb.add_parser("member").add_subparsers(dest="action", required=True,
                                                    parser_class=Parser)
    for action in ("add", "remove"):
        p = member.add_parser(action)
        p.add_argument("name")
        p.add_argument("instances", nargs="+")


def run(cloud, args, namespace):
    lbs = cloud.lbs
    if args.verb == "create":
        return lbs.create(args.name, args.network, args.port, args.members, args.algorithm,
                          args.keep_client_address, member_port=args.member_port)
    if args.verb == "list":
        return lbs.table()
    if args.verb == "show":
        return lbs.get(args.name)
    if args.verb == "member":
        if args.action == "add":
            return lbs.add_members(args.name, args.instances)
        return lbs.remove_members(args.name, args.instances)
    lbs.delete(args.name)
    return Message(f"deleted load balancer {args.name}")
