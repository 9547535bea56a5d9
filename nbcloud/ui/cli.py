"""The `nbcloud` command: host set-up, doctor, images, and the `%cloud` verbs in a shell."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nbcloud.core.errors import CloudError
from nbcloud.core.spec import InvalidSpec
from nbcloud.ui import commands

USAGE = """usage: nbcloud host up [--netns NAME] [--no-agent] | host down
       nbcloud agent status | run
       nbcloud [--uri URI] doctor | image ... | flavor list | instance ...
       nbcloud [--uri URI] terminal NAME [--serial]   (Ctrl-] leaves)
"""


def _host_parser(prog: str, verbs: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("verb", choices=verbs)
    p.add_argument("--netns", help="the network namespace of libvirtd (its bridges, "
                                   "dnsmasq, guests), created by `up` if absent")
    p.add_argument("--inventory", type=Path, help="the inventory the host agent serves "
                                                  "(default: yours)")
    return p


def _host(argv: list[str], uri: str | None) -> int:
    from nbcloud.agent import control
    p = _host_parser("nbcloud host", ["up", "down"])
    p.add_argument("--no-agent", action="store_true",
                   help="up: start no host agent (kernels sample and scale themselves)")
    args = p.parse_args(argv)
    place = control.Host(uri or control.host.SYSTEM, netns=args.netns,
                         inventory=args.inventory)
    if args.verb == "up":
        done = control.up(place, agent=not args.no_agent)
    else:
        done = control.down(place)
    print("\n".join(done) if done else "host is up; nothing to change")
    return 0


def _agent(argv: list[str], uri: str | None) -> int:
    from nbcloud.agent import control, daemon
    p = _host_parser("nbcloud agent", ["status", "run"])
    p.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args(argv)
    place = control.Host(uri or control.host.SYSTEM, netns=args.netns,
                         inventory=args.inventory, interval=args.interval)
    if args.verb == "status":
        print("\n".join(control.status(place)))
        return 0
    import logging   # run: in the foreground, no supervisor (Ctrl-C stops it)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent: %(message)s")
    return daemon.run_agent(place.uri, place.inventory, place.folder, place.interval)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    uri = None
    if argv[:1] == ["--uri"] and len(argv) > 1:
        uri, argv = argv[1], argv[2:]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    try:
        if argv[0] == "host" and argv[1:2] in (["up"], ["down"], [], ["-h"], ["--help"]):
            return _host(argv[1:], uri)   # set-up; `host add|list|remove` are the cloud's
        if argv[0] == "agent":
            return _agent(argv[1:], uri)
        if argv[0] == "terminal":   # the same as `instance terminal`, in this terminal
            argv = ["instance", *argv]
        args = commands.parse(argv, prog="nbcloud")
        from nbcloud.api import Cloud
        if args.group == "doctor":  # must also work when no daemon answers
            from nbcloud.ui.doctor import diagnose
            report = diagnose(uri)
            print(report)
            return 0 if report.ok else 1
        if args.group == "connect":
            raise commands.CommandError("connect is for notebooks; use --uri URI here")
        cloud = Cloud(uri)
        try:
            if args.group == "instance" and args.verb == "terminal":
                from nbcloud.ui.terminal import run_in_tty
                return run_in_tty(cloud.instances.get(args.name), serial=args.serial)
            result = commands.run(cloud, args)
            # printed before closing: an Instance reads its state through the connection
            print("\n".join(map(repr, result)) if isinstance(result, list) else result)
        finally:
            cloud.close()
        return 0
    except (commands.CommandError, CloudError, InvalidSpec) as exc:
        print(f"nbcloud: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Interrupted says what was left running
        print(f"nbcloud: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
