"""`%cloud export ansible|yaml|heat [--stack NAME] [--output FILE]`: an Ansible inventory
of the running instances (their pinned host keys in FILE.known_hosts beside it), the
stacks as `%%cloud apply` cells, or a stack as a Heat template."""
from __future__ import annotations

from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    ex = verbs(sub, name)
    for verb in ("ansible", "yaml", "heat"):
        p = ex.add_parser(verb)
        p.add_argument("--output", "-o", metavar="FILE", help="write the export to FILE as well")
        if verb == "heat":
            p.add_argument("--stack", help="the stack to export (the only one, if not named)")


def run(cloud, args, namespace):
    from nbcloud.workflows import export
    if args.verb == "heat":
        out = export.heat(cloud.services, args.stack, namespace)
    elif args.verb == "ansible":  # its known_hosts file goes beside the output file
        out = export.ansible(cloud.services, args.output)
    else:
        out = export.cells(cloud.services)
    if args.output:
        out.save(args.output)
    return out
