"""`%cloud export ansible|yaml [--output FILE]`: an Ansible inventory of the instances,
or the stacks as `%%cloud apply` cells."""
from __future__ import annotations

from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    ex = verbs(sub, name)
    for verb in ("ansible", "yaml"):
        ex.add_parser(verb).add_argument("--output", "-o", metavar="FILE",
                                         help="write the export to FILE as well")


def run(cloud, args, namespace):
    from nbcloud.workflows import export
    out = export.ansible(cloud.services) if args.verb == "ansible" else export.cells(cloud.services)
    if args.output:
        out.save(args.output)
    return out
