"""`%cloud`: the IPython line magic, a thin skin over `nbcloud.Cloud`."""
from __future__ import annotations

import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Float, Unicode

from nbcloud.core.errors import CloudError, Interrupted
from nbcloud.core.spec import InvalidSpec
from nbcloud.ui import commands


def split_remote(line: str) -> tuple[str, str | None]:
    """The line before its first `--` word and the raw text after it (None without one).

    A `--` inside quotes or escaped is not the separator; the text after the separator is
    returned unchanged but for the blanks that separate it from `--`."""
    quote, start = None, True          # start: the next character begins a word
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quote is None and start and line.startswith("--", i) \
                and (i + 2 == n or line[i + 2].isspace()):
            return line[:i], line[i + 2:].lstrip()
        start = quote is None and c.isspace()
        if quote == "'":
            quote = None if c == "'" else quote
        elif c == "\\":
            i += 1                      # the next character is escaped (also in "...")
        elif quote == '"':
            quote = None if c == '"' else quote
        elif c in "'\"":
            quote = c
        i += 1
    return line, None


@magics_class
class CloudMagics(Magics):
    """Drive a libvirt host as a small cloud from notebook cells."""

    uri = Unicode("", config=True,
                  help="libvirt URI to connect to; empty picks qemu:///system when its "
                       "daemon socket is there, else qemu:///session").tag(config=True)
    inventory = Unicode("", config=True,
                        help="path of the SQLite inventory (default: "
                             "~/.local/share/nbcloud/inventory.sqlite)").tag(config=True)
    ssh_timeout = Float(120.0, config=True,
                        help="seconds to wait for SSH after create/start").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._cloud = None

    @property
    def api(self):
        """The connected `nbcloud.Cloud` (connects on first use)."""
        if self._cloud is None:
            self.connect(self.uri or None)
        return self._cloud

    def connect(self, uri: str | None):
        from nbcloud.api import Cloud
        from nbcloud.inventory import Inventory
        if self._cloud is not None:
            self._cloud.close()
            self._cloud = None
        self._cloud = Cloud(uri, inventory=Inventory(self.inventory or None),
                            ssh_timeout=self.ssh_timeout)
        return self._cloud

    def close(self) -> None:
        if self._cloud is not None:
            self._cloud.close()
            self._cloud = None

    @no_var_expand
    @line_cell_magic
    def cloud(self, line: str, cell: str | None = None):
        """%cloud GROUP VERB ... — see `%cloud doctor` and DESIGN.md for the grammar.
        %%cloud apply|plan|destroy [--stack NAME] — the cell's YAML is the stack."""
        if cell is not None:
            return self._stack_cell(line, cell)
        # `instance ssh NAME -- COMMAND`: the text after `--` reaches the guest's shell as
        # the user typed it (split into words and joined again, its quoting would be lost)
        head, remote = split_remote(line)
        try:
            argv = self._expand(shlex.split(head))
        except ValueError as exc:
            raise UsageError(f"cannot split the line: {exc}") from None
        if remote is not None:
            argv += ["--", remote]
        if not argv:
            raise UsageError("%cloud needs a command, like `%cloud doctor` or "
                             "`%cloud instance list`")
        try:
            args = commands.parse(argv)
            if args.group == "connect":
                return self.connect(args.uri)
            return commands.run(self.api, args, self.shell.user_ns if self.shell else None)
        except (commands.CommandError, CloudError, InvalidSpec) as exc:
            raise UsageError(str(exc)) from None
        except Interrupted as exc:  # Ctrl-C in a create: one line saying what is left
            raise UsageError(str(exc)) from None

    #: options whose `$VAR` names a notebook variable that the command reads itself (a
    #: multi-line script would not survive IPython's expansion into the line)
    _BY_NAME = ("--user-data", "--provision", "--script")

    def _expand(self, argv: list[str]) -> list[str]:
        """IPython's `$name` / `{expr}` expansion, token by token, after splitting."""
        if self.shell is None:
            return argv
        out = []
        for i, token in enumerate(argv):
            keep = token.startswith("$") and i > 0 and argv[i - 1] in self._BY_NAME
            out.append(token if keep else self.shell.var_expand(token))
        return out

    def _stack_cell(self, line: str, cell: str):
        from IPython.display import display
        try:  # `--stack {name}` expands like a line magic's words (a runbook's parameter)
            argv = self._expand(shlex.split(line))
        except ValueError as exc:
            raise UsageError(f"cannot split the line: {exc}") from None
        try:
            args = commands.parse_cell(argv)
            ns = self.shell.user_ns if self.shell else None
            stacks = self.api.stacks
            if args.verb == "plan":
                return stacks.plan(args.stack, cell, ns)
            if args.verb == "destroy":
                return stacks.destroy(args.stack, show=display)
            return stacks.apply(args.stack, cell, ns, show=display)
        except (commands.CommandError, CloudError, InvalidSpec) as exc:
            raise UsageError(str(exc)) from None
