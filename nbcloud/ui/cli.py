"""The `nbcloud` command: host set-up, doctor, images, and the `%cloud` verbs in a shell."""
from __future__ import annotations

import argparse
import sys

from nbcloud.core.errors import CloudError
from nbcloud.core.spec import InvalidSpec
from nbcloud.ui import commands

USAGE = """usage: nbcloud host up [--netns NAME] | host down
       nbcloud [--uri URI] doctor | image ... | flavor list | instance ...
       nbcloud [--uri URI] terminal NAME [--serial]   (Ctrl-] leaves)
"""


def _host(argv: list[str]) -> int:
    from nbcloud.providers.libvirt import host
    p = argparse.ArgumentParser(prog="nbcloud host")
    p.add_argument("verb", choices=["up", "down"])
    p.add_argument("--netns", help="run libvirtd (its bridges, dnsmasq, guests) in this "
                                   "network namespace, created if absent")
    args = p.parse_args(argv)
    done = host.up(args.netns) if args.verb == "up" else host.down()
    print("\n".join(done) if done else "host is up; nothing to change")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    uri = None
    if argv[:1] == ["--uri"] and len(argv) > 1:
        uri, argv = argv[1], argv[2:]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    try:
        if argv[0] == "host":
            return _host(argv[1:])
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
