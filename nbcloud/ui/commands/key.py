"""`%cloud key create NAME | import NAME PUBLIC_KEY_FILE_OR_TEXT | list | show NAME |
delete NAME`. No verb ever shows a private key: `create` shows where it is."""
from __future__ import annotations

from nbcloud.core.display import Message, Table
from nbcloud.ui.commands.base import verbs


def add_parser(sub, name: str) -> None:
    key = verbs(sub, name)
    key.add_parser("create").add_argument("name")
    imp = key.add_parser("import")
    imp.add_argument("name")
    # a key line arrives split in words ("ssh-ed25519 AAAA... comment"): joined again
    imp.add_argument("public_key", nargs="+", metavar="PUBLIC_KEY_FILE_OR_TEXT")
    key.add_parser("list")
    for verb in ("show", "delete"):
        key.add_parser(verb).add_argument("name")


def run(cloud, args, namespace):
    if args.verb == "create":
        return cloud.keys.create(args.name)
    if args.verb == "import":
        return cloud.keys.import_(args.name, " ".join(args.public_key))
    if args.verb == "list":
        return Table(["key", "type", "fingerprint", "private key here"],
                     [(k.name, k.type, k.fingerprint, "yes" if k.has_private else "no")
                      for k in cloud.keys.list()], "keys")
    if args.verb == "show":
        return cloud.keys.get(args.name)
    cloud.keys.delete(args.name)
    return Message(f"deleted key {args.name}")
