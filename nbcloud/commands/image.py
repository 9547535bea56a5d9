"""`%cloud image list | build tiny | delete NAME`."""
from __future__ import annotations

from ..display import Message, Table
from .base import verbs


def add_parser(sub, name: str) -> None:
    img = verbs(sub, name)
    img.add_parser("list")
    img.add_parser("build").add_argument("name", choices=["tiny"])
    img.add_parser("delete").add_argument("name")


def run(cloud, args, namespace):
    if args.verb == "list":
        return Table(["image", "kind", "size", "digest"],
                     [(i.name, i.kind, f"{i.size / 2**20:.1f} MiB", i.digest[:12])
                      for i in cloud.images.list()], "images")
    if args.verb == "build":
        return cloud.build_tiny()
    cloud.images.delete(args.name)
    return Message(f"deleted image {args.name}")
