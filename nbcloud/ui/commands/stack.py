"""`%cloud stack list | show NAME | destroy NAME` (the cell side is `%%cloud apply|plan|destroy`)."""
from __future__ import annotations

from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    st = verbs(sub, name)
    st.add_parser("list")
    for verb in ("show", "destroy"):
        st.add_parser(verb).add_argument("name")


def run(cloud, args, namespace):
    if args.verb == "list":
        return cloud.stacks.list()
    if args.verb == "show":
        return cloud.stacks.show(args.name)
    return cloud.stacks.destroy(args.name)
