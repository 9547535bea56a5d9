"""`%cloud host add NAME URI [--cpu-ratio R] [--ram-ratio R] [--address A] | list |
remove NAME | drain NAME`: the libvirt hosts of one cloud.

The cloud's own URI (the one `%cloud connect` opened) is its home host; `host add` with
that URI names it and sets its ratios."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.ui.commands.base import verbs
from nbcloud.ui.progress import PhaseProgress


def add_parser(sub, name: str) -> None:
    h = verbs(sub, name)
    add = h.add_parser("add")
    add.add_argument("name")
    add.add_argument("uri")
    add.add_argument("--cpu-ratio", dest="cpu_ratio", default="4",
                     help="vCPUs offered per host core (Nova's cpu_allocation_ratio)")
    add.add_argument("--ram-ratio", dest="ram_ratio", default="1",
                     help="memory offered per byte of host memory (ram_allocation_ratio)")
    add.add_argument("--address", help="where the other hosts reach this one (its VXLAN "
                                       "end); default: the URI's host name")
    h.add_parser("list")
    h.add_parser("remove").add_argument("name")
    h.add_parser("drain").add_argument("name")


def run(cloud, args, namespace):
    hosts = cloud.hosts
    if args.verb == "add":
        info = hosts.add(args.name, args.uri, cpu_ratio=args.cpu_ratio,
                         ram_ratio=args.ram_ratio, address=args.address)
        return Message(f"host {info.name} ({info.uri}): {info.state}, {info.vcpus} cores, "
                       f"{info.memory >> 20} MiB, {len(info.instances)} instances")
    if args.verb == "list":
        return hosts.table()
    if args.verb == "remove":
        hosts.remove(args.name)
        return Message(f"removed host {args.name}")
    moved = hosts.drain(args.name, progress=PhaseProgress(f"drain {args.name}"))
    return Message(f"drained host {args.name}: " + (", ".join(moved) or "it held nothing")
                   + "; it takes no new instance until `host add` again")
