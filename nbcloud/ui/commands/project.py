"""`%cloud project create NAME [--quota KEY=N ...] | list | quotas NAME | delete NAME`:
a project, user and quotas for a student (an OpenStack admin's; projects.py)."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.ui.commands.base import CommandError, verbs


def add_parser(sub, name: str) -> None:
    pr = verbs(sub, name)
    create = pr.add_parser("create")
    create.add_argument("name")
    create.add_argument("--quota", action="append", default=[], metavar="KEY=N",
                        help="instances, cores, ram (like 1G), networks, routers, "
                             "floating_ips, ports, volumes, gigabytes")
    pr.add_parser("list")
    for verb in ("quotas", "delete"):
        pr.add_parser(verb).add_argument("name")


def run(cloud, args, namespace):
    if args.verb == "create":
        quotas = {}
        for item in args.quota:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--quota {item!r}: use KEY=N, like instances=3")
            quotas[key] = value if key == "ram" else _number(key, value)
        return cloud.projects.create(args.name, quotas)
    if args.verb == "list":
        return cloud.projects.table()
    if args.verb == "quotas":
        return cloud.projects.quotas(args.name)
    cloud.projects.delete(args.name)
    return Message(f"deleted project and user {args.name}")


def _number(key: str, value: str) -> int:
    if not value.isdigit():
        raise CommandError(f"--quota {key}={value!r}: a whole number")
    return int(value)
