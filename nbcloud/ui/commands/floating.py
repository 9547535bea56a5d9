"""`%cloud floating create INSTANCE --port 22 [--host-port 2222] [--host-address A]
[--proto tcp|udp] | list | delete NAME | restore`: port forwards from the host to an instance."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.services.floating import PROTOCOLS
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    fl = verbs(sub, name)
    cr = fl.add_parser("create")
    cr.add_argument("instance")
    cr.add_argument("--port", required=True, help="the instance's port")
    cr.add_argument("--host-port", help="default: a free port from 20000-29999")
    cr.add_argument("--host-address", help="default: every address of the host")
    cr.add_argument("--proto", default="tcp", choices=PROTOCOLS)
    fl.add_parser("delete").add_argument("name")
    fl.add_parser("list")
    fl.add_parser("restore", help="put back rules the host lost (after a restart)")


def run(cloud, args, namespace):
    if args.verb == "create":
        return cloud.floating.create(args.instance, args.port, host_port=args.host_port,
                                     host_address=args.host_address, proto=args.proto)
    if args.verb == "delete":
        cloud.floating.delete(args.name)
        return Message(f"deleted port forward {args.name}")
    if args.verb == "restore":
        names = cloud.floating.restore()
        return Message(f"restored {', '.join(names)}" if names else
                       "every port forward's rules are in place")
    return cloud.floating.table()
