"""`%cloud image list | import NAME SOURCE [--sha256 HEX] | build tiny|debian | warm NAME
[--flavor F] [--network N] | delete NAME`."""
from __future__ import annotations

import sys

from nbcloud.core.display import Message, Table
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    img = verbs(sub, name)
    img.add_parser("list")
    imp = img.add_parser("import")
    imp.add_argument("name")
    imp.add_argument("source", help="a local qcow2/raw file or an http(s) URL")
    imp.add_argument("--sha256", help="the expected SHA-256 of the file (hex)")
    img.add_parser("build").add_argument("name", choices=["tiny", "debian"])
    img.add_parser("delete").add_argument("name")
    warm = img.add_parser("warm", help="boot NAME once and save it, so that instances of "
                          "this image and flavor are warm clones of it")
    warm.add_argument("name")
    warm.add_argument("--flavor", default="t.nano")
    warm.add_argument("--network", default=None)


def run(cloud, args, namespace):
    from nbcloud.ui.progress import byte_progress
    if args.verb == "list":
        return Table(["image", "kind", "boot", "format", "size", "virtual size", "digest"],
                     [(i.name, i.kind, i.boot, i.disk_format or "-", _mib(i.size),
                       _mib(i.virtual_size) if i.virtual_size else "-",
                       i.digest[:12])
                      for i in cloud.images.list()], "images")
    if args.verb == "import":
        return cloud.import_image(args.name, args.source, sha256=args.sha256,
                                  progress=byte_progress(f"import {args.name}"))
    if args.verb == "build":
        say = _say  # a line per step: the Debian build takes minutes
        return (cloud.build_debian(progress=say) if args.name == "debian"
                else cloud.build_tiny(progress=say))
    if args.verb == "warm":
        from nbcloud.ui.progress import step_progress
        return Message(cloud.warm(args.name, args.flavor, args.network, step_progress()))
    cloud.images.delete(args.name)
    return Message(f"deleted image {args.name}")


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def _say(message: str) -> None:
    print(message, file=sys.stderr if sys.stderr.isatty() else sys.stdout, flush=True)
