"""`%cloud flavor list`."""
from __future__ import annotations

from nbcloud.core.display import Table
from nbcloud.core.spec import format_size
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    verbs(sub, name).add_parser("list")


def run(cloud, args, namespace):
    return Table(["flavor", "family", "vcpus", "memory", "cpu share", "local disk"],
                 [(f.name, f.family, f.vcpus, format_size(f.memory), f"{f.cpu_share:.0%}",
                   format_size(f.local_disk) if f.local_disk else "-")
                  for f in cloud.flavors()], "flavors")
