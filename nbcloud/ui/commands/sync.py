"""`%cloud sync list INSTANCE`: an instance's synced folders (made with `instance create
--sync HOSTDIR:GUESTDIR`; virtiofs needs them at create time, see synced.py)."""
from __future__ import annotations

from nbcloud.core.display import Table
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    verbs(sub, name).add_parser("list").add_argument("instance")


def run(cloud, args, namespace):
    folders = cloud.sync.folders(args.instance)
    return Table(["host folder", "guest folder", "tag"],
                 [(f.host_dir, f.guest_dir, f.tag) for f in folders],
                 f"synced folders of {args.instance}")
