"""`%cloud drift`: the inventory vs live libvirt (deleted or changed behind nbcloud's back,
and objects nbcloud did not make, which it lists and never touches)."""
from __future__ import annotations


def add_parser(sub, name: str) -> None:
    sub.add_parser(name)


def run(cloud, args, namespace):
    return cloud.stacks.drift()
