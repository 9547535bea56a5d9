"""`%cloud recover OP_ID [--rollback]`: settle an operation that was interrupted (see
`%cloud doctor` for their ids)."""
from __future__ import annotations

from ..display import Message
from .base import CommandError


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="settle an interrupted operation")
    p.add_argument("op_id")
    p.add_argument("--rollback", action="store_true", default=True,
                   help="undo what it half-made (the only way offered so far)")


def run(cloud, args, namespace):
    try:
        op_id = int(args.op_id)
    except ValueError:
        raise CommandError(f"recover {args.op_id!r}: give the operation's number, as "
                           "`%cloud doctor` lists it") from None
    removed = cloud.recover(op_id, "rollback")
    return Message(f"operation {op_id} rolled back"
                   + (": removed " + ", ".join(removed) if removed else ": nothing was left"))
