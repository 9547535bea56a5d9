"""What every command module shares: the one-line-error parser."""
from __future__ import annotations

import argparse


class CommandError(Exception):
    """A command line the grammar does not accept (one line, with the usage)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print and exit
        usage = " ".join(self.format_usage().split()[1:])
        raise CommandError(f"{message} (usage: {usage})")

    def exit(self, status: int = 0, message: str | None = None):
        raise CommandError(message or self.format_help())


def verbs(sub, name: str):
    """The sub-parsers of group `name` (`%cloud NAME VERB ...`)."""
    return sub.add_parser(name).add_subparsers(dest="verb", required=True,
                                               parser_class=Parser)
