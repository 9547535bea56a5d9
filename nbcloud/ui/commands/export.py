"""`%cloud export ansible|yaml [--output FILE]`: an Ansible inventory of the running
instances (their pinned host keys in FILE.known_hosts beside it), or the stacks as
`%%cloud apply` cells."""
from __future__ import annotations

from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    ex = verbs(sub, name)
    for verb in ("ansible", "yaml"):
        ex.add_parser(verb).add_argument("--output", "-o", metavar="FILE",
                                         help="write the export to FILE as well")


def run(cloud, args, namespace):
    from nbcloud.workflows import export
    if args.verb == "ansible":  # its known_hosts file goes beside the output file
        out = export.ansible(cloud.services, args.output)
    else:
        out = export.cells(cloud.services)
    if args.output:
        out.save(args.output)
    return out
