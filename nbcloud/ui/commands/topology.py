"""`%cloud topology [--stack S]`: the live Plotly graph of what the inventory holds."""
from __future__ import annotations

from nbcloud.core.spec import check_name


def add_parser(sub, name: str) -> None:
    sub.add_parser(name).add_argument("--stack")


def run(cloud, args, namespace):
    from nbcloud.ui.topology import LiveTopology
    stack = check_name(args.stack, "stack name") if args.stack else None
    return LiveTopology(cloud, stack)
