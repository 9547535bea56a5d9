"""`%cloud dns add NETWORK NAME IP | add NETWORK NAME --cname TARGET |
add NETWORK NAME --failover IP,IP... [--port 80] | list NETWORK | delete NETWORK NAME`."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    dns = verbs(sub, name)
    add = dns.add_parser("add")
    add.add_argument("network")
    add.add_argument("name")
    add.add_argument("ip", nargs="?")
    add.add_argument("--cname", metavar="TARGET")
    add.add_argument("--failover", metavar="IP,IP...",
                     help="point NAME at the first of these that accepts TCP on --port")
    add.add_argument("--port", default="80")
    dns.add_parser("list").add_argument("network")
    de = dns.add_parser("delete")
    de.add_argument("network")
    de.add_argument("name")


def run(cloud, args, namespace):
    if args.verb == "add":
        return cloud.dns.add(args.network, args.name, args.ip, cname=args.cname,
                             failover=args.failover, port=args.port)
    if args.verb == "list":
        return cloud.dns.table(args.network)
    cloud.dns.delete(args.network, args.name)
    return Message(f"deleted {args.name} on network {args.network}")
