"""`%cloud adopt NAME [--kind instance|network|volume] [--stack S]`: bring an object made
outside nbcloud (with virsh) into the inventory; plan, drift and destroy manage it then."""
from __future__ import annotations

from ..adopt import KINDS
from ..display import Message


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="bring a libvirt object made outside nbcloud in")
    p.add_argument("name")
    p.add_argument("--kind", choices=KINDS, default="instance")
    p.add_argument("--stack", default="adhoc")


def run(cloud, args, namespace):
    return Message(cloud.adopt(args.name, args.kind, args.stack))
