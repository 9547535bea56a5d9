"""`%cloud recover OP_ID [--rollback | --resume]`: settle an operation that was interrupted
(see `%cloud doctor` for their ids): undo what it half-made, or finish it."""
from __future__ import annotations

from nbcloud.core.display import Message
from nbcloud.ui.commands.base import CommandError


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="settle an interrupted operation")
    p.add_argument("op_id")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--rollback", dest="how", action="store_const", const="rollback",
                     help="undo what it half-made (the default)")
    how.add_argument("--resume", dest="how", action="store_const", const="resume",
                     help="finish what it started")
    p.set_defaults(how="rollback")


def run(cloud, args, namespace):
    try:
        op_id = int(args.op_id)
    except ValueError:
        raise CommandError(f"recover {args.op_id!r}: give the operation's number, as "
                           "`%cloud doctor` lists it") from None
    done = cloud.recover(op_id, args.how)
    if args.how == "resume":
        return Message(f"operation {op_id} resumed"
                       + (": " + ", ".join(done) if done else ": it was complete already"))
    return Message(f"operation {op_id} rolled back"
                   + (": removed " + ", ".join(done) if done else ": nothing was left"))
