"""`%cloud cdrom create NAME --from FOLDER [--pool P] | attach NAME INSTANCE [--bus virtio|sata]
| detach NAME [INSTANCE] | delete NAME | list`."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.ui.commands.base import verbs
from nbcloud.ui.commands.volume import table


def add_parser(sub, name: str) -> None:
    cd = verbs(sub, name)
    cr = cd.add_parser("create")
    cr.add_argument("name")
    cr.add_argument("--from", dest="folder", required=True)
    cr.add_argument("--pool")
    at = cd.add_parser("attach")
    at.add_argument("name")
    at.add_argument("instance")
    at.add_argument("--bus", default="virtio", choices=("virtio", "sata"))
    de = cd.add_parser("detach")
    de.add_argument("name")
    de.add_argument("instance", nargs="?")
    cd.add_parser("delete").add_argument("name")
    cd.add_parser("list")


def run(cloud, args, namespace):
    cds = cloud.cdroms
    if args.verb == "create":
        return cds.create(args.name, args.folder, pool=args.pool)
    if args.verb == "attach":
        cds.attach(args.name, args.instance, bus=args.bus)
        return Message(f"attached cdrom {args.name} to {args.instance} (read-only)")
    if args.verb == "detach":
        cds.detach(args.name, args.instance)
        return Message(f"detached cdrom {args.name}")
    if args.verb == "delete":
        cds.delete(args.name)
        return Message(f"deleted cdrom {args.name}")
    return table(cds.list(), "cdroms")
