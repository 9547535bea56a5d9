"""`%cloud adopt NAME [--kind instance|network|volume] [--stack S] [--ssh [--user U]
[--key K]]`: bring an object made outside nbcloud (with virsh) into the inventory; plan,
drift and destroy manage it then. --ssh pins an instance's SSH host key."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.workflows.adopt import KINDS


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="bring a libvirt object made outside nbcloud in")
    p.add_argument("name")
    p.add_argument("--kind", choices=KINDS, default="instance")
    p.add_argument("--stack", default="adhoc")
    p.add_argument("--ssh", action="store_true",
                   help="pin the instance's SSH host key (trust on first use)")
    p.add_argument("--user", help="login name for SSH (with --ssh; default root)")
    p.add_argument("--key", help="login key name for SSH (with --ssh; default default)")


def run(cloud, args, namespace):
    return Message(cloud.adopt(args.name, args.kind, args.stack, ssh=args.ssh,
                               user=args.user, key=args.key))
