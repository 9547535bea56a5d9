"""`%cloud secgroup create NAME | rule add NAME --proto tcp --port 22[-23]
[--source CIDR | --source-group G] [--egress] | rule delete NAME RULE_ID | attach NAME
INSTANCE | detach NAME INSTANCE | show NAME | list | delete NAME`."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.services.secgroups import PROTOCOLS
from nbcloud.ui.commands.base import Parser, verbs


def add_parser(sub, name: str) -> None:
    sg = verbs(sub, name)
    sg.add_parser("create").add_argument("name")
    rule = sg.add_parser("rule").add_subparsers(dest="rule_verb", required=True,
                                                parser_class=Parser)
    add = rule.add_parser("add")
    add.add_argument("name")
    add.add_argument("--proto", default="tcp", choices=PROTOCOLS)
    add.add_argument("--port", help="a port or a range LOW-HIGH (tcp and udp)")
    src = add.add_mutually_exclusive_group()
    src.add_argument("--source", help="remote IPv4 network (CIDR) or address")
    src.add_argument("--source-group", help="remote = the members of this group")
    add.add_argument("--egress", action="store_true",
                     help="a rule for traffic the instance sends (default: ingress)")
    de = rule.add_parser("delete")
    de.add_argument("name")
    de.add_argument("rule_id", type=int)
    for verb in ("attach", "detach"):
        p = sg.add_parser(verb)
        p.add_argument("name")
        p.add_argument("instance")
    sg.add_parser("show").add_argument("name")
    sg.add_parser("delete").add_argument("name")
    sg.add_parser("list")


def run(cloud, args, namespace):
    groups = cloud.secgroups
    if args.verb == "create":
        return groups.create(args.name)
    if args.verb == "rule" and args.rule_verb == "add":
        rule = groups.add_rule(args.name, proto=args.proto, port=args.port,
                               source=args.source, source_group=args.source_group,
                               egress=args.egress)
        return Message(f"security group {args.name}: rule {rule.id} {rule.describe()}")
    if args.verb == "rule":
        rule = groups.delete_rule(args.name, args.rule_id)
        return Message(f"security group {args.name}: deleted rule {rule.id} "
                       f"({rule.describe()})")
    if args.verb == "attach":
        groups.attach(args.name, args.instance)
        return Message(f"security group {args.name} attached to {args.instance}")
    if args.verb == "detach":
        groups.detach(args.name, args.instance)
        return Message(f"security group {args.name} detached from {args.instance}")
    if args.verb == "show":
        return groups.get(args.name)
    if args.verb == "delete":
        groups.delete(args.name)
        return Message(f"deleted security group {args.name}")
    return groups.table()
