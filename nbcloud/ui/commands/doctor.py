"""`%cloud doctor`: what works here."""
from __future__ import annotations


def add_parser(sub, name: str) -> None:
    sub.add_parser(name, help="what works here")


def run(cloud, args, namespace):
    from nbcloud.ui.doctor import diagnose
    return diagnose(cloud=cloud)
