"""The `%cloud` grammar (DESIGN.md, The magic), shared by the magic and the command line.

`parse(argv)` turns words into an argparse namespace (errors raise `CommandError` with one
line); `run(cloud, args, resolve)` performs it and returns a displayable object.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import flavors
from .display import Message, Table
from .spec import format_size


class CommandError(Exception):
    """A command line the grammar does not accept (one line, with the usage)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print and exit
        usage = " ".join(self.format_usage().split()[1:])
        raise CommandError(f"{message} (usage: {usage})")

    def exit(self, status: int = 0, message: str | None = None):
        raise CommandError(message or self.format_help())


def build_parser(prog: str = "%cloud") -> _Parser:
    p = _Parser(prog=prog, add_help=False)
    sub = p.add_subparsers(dest="group", required=True, parser_class=_Parser)

    c = sub.add_parser("connect", help="connect to a libvirt URI")
    c.add_argument("uri", nargs="?")
    sub.add_parser("doctor", help="what works here")

    img = sub.add_parser("image").add_subparsers(dest="verb", required=True,
                                                 parser_class=_Parser)
    img.add_parser("list")
    b = img.add_parser("build")
    b.add_argument("name", choices=["tiny"])
    d = img.add_parser("delete")
    d.add_argument("name")

    fl = sub.add_parser("flavor").add_subparsers(dest="verb", required=True,
                                                 parser_class=_Parser)
    fl.add_parser("list")

    for word in ("instance", "vm"):
        inst = sub.add_parser(word).add_subparsers(dest="verb", required=True,
                                                   parser_class=_Parser)
        cr = inst.add_parser("create")
        cr.add_argument("name")
        cr.add_argument("--image", default="tiny")
        cr.add_argument("--flavor", default="t.nano")
        cr.add_argument("--network", action="append", dest="networks")
        cr.add_argument("--user-data", dest="user_data")
        cr.add_argument("--key", default="default")
        cr.add_argument("--count", default="1")
        cr.add_argument("--no-wait", action="store_true")
        inst.add_parser("list")
        for verb in ("show", "start", "stop", "reboot", "delete", "console"):
            inst.add_parser(verb).add_argument("name")
        s = inst.add_parser("ssh")
        s.add_argument("name")
        s.add_argument("command", nargs=argparse.REMAINDER)
    return p


def parse(argv: list[str], prog: str = "%cloud") -> argparse.Namespace:
    args = build_parser(prog).parse_args(argv)
    if args.group == "vm":
        args.group = "instance"
    return args


def read_user_data(value: str | None, namespace: dict | None) -> str | None:
    """--user-data FILE, or $VAR from the notebook namespace."""
    if value is None:
        return None
    if value.startswith("$"):
        name = value[1:]
        if namespace is None or name not in namespace:
            raise CommandError(f"--user-data {value}: there is no variable {name!r} in "
                               "the notebook")
        return str(namespace[name])
    path = Path(value).expanduser()
    if not path.is_file():
        raise CommandError(f"--user-data {value}: no such file (give a file path or "
                           "$variable)")
    return path.read_text()


def run(cloud, args: argparse.Namespace, namespace: dict | None = None):
    """Perform a parsed command against `cloud`; return what to display."""
    if args.group == "doctor":
        from .doctor import diagnose
        return diagnose(cloud=cloud)
    if args.group == "flavor":
        return Table(["flavor", "family", "vcpus", "memory", "cpu share", "local disk"],
                     [(f.name, f.family, f.vcpus, format_size(f.memory),
                       f"{f.cpu_share:.0%}", format_size(f.local_disk) if f.local_disk
                       else "-") for f in flavors.CATALOGUE.values()], "flavors")
    if args.group == "image":
        return _image(cloud, args)
    if args.group == "instance":
        return _instance(cloud, args, namespace)
    raise CommandError(f"unknown command {args.group!r}")


def _image(cloud, args):
    if args.verb == "list":
        return Table(["image", "kind", "size", "digest"],
                     [(i.name, i.kind, f"{i.size / 2**20:.1f} MiB", i.digest[:12])
                      for i in cloud.images.list()], "images")
    if args.verb == "build":
        return cloud.build_tiny()
    cloud.images.delete(args.name)
    return Message(f"deleted image {args.name}")


def _instance(cloud, args, namespace):
    if args.verb == "create":
        result = cloud.instances.create(
            args.name, image=args.image, flavor=args.flavor,
            network=args.networks or "nbcloud",
            user_data=read_user_data(args.user_data, namespace), key=args.key,
            count=args.count, wait=not args.no_wait)
        return result
    if args.verb == "list":
        return Table(["name", "state", "ip", "flavor", "image"],
                     [(i.name, i.state, i.ip, i.flavor, i.image)
                      for i in cloud.instances.list()], "instances")
    if args.verb == "ssh":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise CommandError("instance ssh NAME -- COMMAND: give a command after --")
        return SSHOutput(cloud.instances.get(args.name).ssh_result(" ".join(command),
                                                                     check=False))
    inst = cloud.instances.get(args.name)
    if args.verb == "show":
        return inst
    if args.verb == "console":
        return Message(inst.console() or "(no console output yet)")
    if args.verb == "delete":
        inst.delete()
        return Message(f"deleted instance {args.name}")
    if args.verb == "stop":
        return Message(f"stopped instance {args.name} ({inst.stop()})")
    if args.verb == "start":
        inst.start()
        return inst
    inst.reboot()
    return Message(f"rebooting instance {args.name}")


class SSHOutput:
    """What `instance ssh` shows: the command's output, and its status when non-zero."""

    def __init__(self, result):
        self.result = result

    def __str__(self) -> str:
        r = self.result
        text = r.stdout + r.stderr
        return text + (f"\n[exit status {r.returncode}]" if r.returncode else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self))}</pre>"

