"""`python -m nbcloud.agent run|supervise ...`: what the supervisor and `nbcloud agent run`
start (ui/cli.py has the user's words for it)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from nbcloud.agent import daemon, supervisor


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nbcloud.agent")
    p.add_argument("verb", choices=["run", "supervise"])
    p.add_argument("--uri", required=True)
    p.add_argument("--inventory", type=Path, help="the inventory file it serves")
    p.add_argument("--folder", type=Path, required=True,
                   help="its lock, pid files and log")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    p.add_argument("--detach", action="store_true", help="supervise: fork away first")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.verb == "supervise":
        if args.detach:
            args.folder.mkdir(parents=True, exist_ok=True)
            supervisor.detach(args.folder)
        return supervisor.supervise(args.folder, supervisor.agent_argv(
            args.uri, args.inventory, args.folder, args.interval))
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s agent %(process)d: %(message)s")
    return daemon.run_agent(args.uri, args.inventory, args.folder, args.interval)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
