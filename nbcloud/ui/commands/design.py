"""`%cloud design [--stack NAME]`: the design palette (servers, storage, CD-ROMs, Internet,
load balancers, composite instances -> a `%%cloud` stack, applied from the palette)."""
from __future__ import annotations


def add_parser(sub, name: str) -> None:
    sub.add_parser(name).add_argument("--stack", default="design")


def run(cloud, args, namespace):
    from nbcloud.ui.design import DesignPalette
    return DesignPalette(cloud, args.stack)
