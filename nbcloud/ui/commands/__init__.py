"""The `%cloud` grammar (DESIGN.md, The magic), shared by the magic and the command line.

One module per group of verbs (instance.py, image.py, ...), each with
`add_parser(sub, name)` and `run(cloud, args, namespace)`; a module in this package that
has both is a group, named after the module. `parse(argv)` turns words into an argparse namespace
(errors raise `CommandError`, one line); `run` performs it and returns a displayable object.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil

from nbcloud.ui.commands.base import CommandError, Parser


def _discover() -> dict:
    groups = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "add_parser", None)) and callable(getattr(module, "run",
                                                                             None)):
            groups[info.name] = module
    return groups


GROUPS = _discover()
ALIASES = {"vm": "instance"}

__all__ = ["CommandError", "build_parser", "parse", "parse_cell", "run"]


def build_parser(prog: str = "%cloud") -> Parser:
    p = Parser(prog=prog, add_help=False)
    sub = p.add_subparsers(dest="group", required=True, parser_class=Parser)
    c = sub.add_parser("connect", help="connect to a libvirt URI")
    c.add_argument("uri", nargs="?")
    for name, module in GROUPS.items():
        module.add_parser(sub, name)
    for alias, name in ALIASES.items():
        GROUPS[name].add_parser(sub, alias)
    return p


def parse(argv: list[str], prog: str = "%cloud") -> argparse.Namespace:
    args = build_parser(prog).parse_args(argv)
    args.group = ALIASES.get(args.group, args.group)
    return args


def parse_cell(argv: list[str]) -> argparse.Namespace:
    """`%%cloud apply|plan|destroy [--stack NAME]` (the cell body is the stack)."""
    p = Parser(prog="%%cloud", add_help=False)
    p.add_argument("verb", choices=("apply", "plan", "destroy"))
    p.add_argument("--stack", default="default")
    return p.parse_args(argv)


def run(cloud, args: argparse.Namespace, namespace: dict | None = None):
    """Perform a parsed command against `cloud`; return what to display."""
    if args.group not in GROUPS:
        raise CommandError(f"unknown command {args.group!r}")
    return GROUPS[args.group].run(cloud, args, namespace)
