"""`%cloud instance ...` (alias `vm`): create, list, show, start, stop, reboot, delete,
console (followed live while it boots), screenshot, ssh, terminal (interactive)."""
from __future__ import annotations

import argparse
import html
import shlex
from pathlib import Path

from nbcloud.core.display import Message
from nbcloud.core.errors import InvalidSpec
from nbcloud.core.flavors import choose
from nbcloud.core.spec import USER_DATA_MAX, check_path
from nbcloud.ui.commands.base import CommandError, verbs
from nbcloud.ui.progress import launch_progress


def add_parser(sub, name: str) -> None:
    inst = verbs(sub, name)
    cr = inst.add_parser("create")
    cr.add_argument("name")
    cr.add_argument("--image", default="tiny")
    cr.add_argument("--flavor", help="an instance type (`%cloud flavor list`; default t.nano)")
    cr.add_argument("--vcpus", help="a custom instance type: this many vCPUs (with --memory)")
    cr.add_argument("--memory", help="a custom instance type: this much memory, like 1G")
    cr.add_argument("--network", action="append", dest="networks")
    cr.add_argument("--user-data", dest="user_data")
    cr.add_argument("--key", default="default")
    cr.add_argument("--count", default="1")
    cr.add_argument("--no-wait", action="store_true")
    cr.add_argument("--boot", choices=["auto", "cold", "clone"], default="auto",
                    help="auto: a warm clone where one can be, else a cold boot; cold; "
                         "clone (builds the warm base first if need be)")
    cr.add_argument("--screen", action="store_true",
                    help="give it a VGA screen for `instance screenshot` (slower boot)")
    cr.add_argument("--keep", action="store_true",
                    help="keep the instance if SSH does not answer in time (to read its "
                         "console); by default it is deleted")
    cr.add_argument("--volume", action="append", dest="volumes", default=[])
    cr.add_argument("--host", help="the host of the cloud it must run on (`host list`)")
    cr.add_argument("--sync", action="append", default=[], metavar="HOSTDIR:GUESTDIR",
                    help="share a host folder into the instance (virtiofs)")
    cr.add_argument("--provision", metavar="FILE_OR_$VAR",
                    help="a shell script run at first boot (output: `instance provision "
                         "NAME --log`)")
    pv = inst.add_parser("provision")
    pv.add_argument("name")
    pv.add_argument("script", nargs="?", metavar="FILE_OR_$VAR",
                    help="run this script now, over SSH")
    pv.add_argument("--log", action="store_true",
                    help="show (and record) the first-boot provisioner's output")
    inst.add_parser("list")
    for verb in ("show", "start", "stop", "reboot", "screenshot"):
        inst.add_parser(verb).add_argument("name")
    term = inst.add_parser("terminal")
    term.add_argument("name")
    term.add_argument("--serial", action="store_true",
                      help="the serial console (works when the guest's network does not)")
    con = inst.add_parser("console")
    con.add_argument("name")
    con.add_argument("--timeout", type=float, default=120.0,
                     help="seconds to follow a booting instance's console at most")
    rm = inst.add_parser("delete")
    rm.add_argument("name")
    rm.add_argument("--volumes", action="store_true",
                    help="also delete the data volumes attached to it")
    for verb in ("snapshot", "revert"):
        snap = inst.add_parser(verb)
        snap.add_argument("name")
        snap.add_argument("snapshot")
    mg = inst.add_parser("migrate")
    mg.add_argument("name")
    mg.add_argument("--to", help="the host to move it to (default: the one with most "
                                 "room)")
    rs = inst.add_parser("resize")
    rs.add_argument("name")
    rs.add_argument("--flavor")
    rs.add_argument("--vcpus")
    rs.add_argument("--memory")
    s = inst.add_parser("ssh")
    s.add_argument("name")
    s.add_argument("command", nargs=argparse.REMAINDER)


def read_user_data(value: str | None, namespace: dict | None,
                   option: str = "--user-data") -> str | None:
    """--user-data FILE, or $VAR from the notebook namespace (also --provision)."""
    if value is None:
        return None
    if option != "--user-data":
        try:
            return read_user_data(value, namespace)
        except (CommandError, InvalidSpec) as exc:
            raise CommandError(str(exc).replace("--user-data", option, 1)) from None
    if value.startswith("$"):
        name = value[1:]
        if namespace is None or name not in namespace:
            raise CommandError(f"--user-data {value}: there is no variable {name!r} in "
                               "the notebook")
        return str(namespace[name])
    path = Path(value).expanduser()
    check_path(path, "--user-data")
    if not path.is_file():
        raise CommandError(f"--user-data {value}: no such file (give a file path or "
                           "$variable)")
    if path.stat().st_size > USER_DATA_MAX:  # refused before it is read into memory
        raise CommandError(f"--user-data {value}: the file is {path.stat().st_size} bytes, "
                           f"at most {USER_DATA_MAX} are allowed")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"--user-data {value}: cannot read it as text ({exc})") from None


def run(cloud, args, namespace):
    if args.verb == "create":
        result = cloud.instances.create(
            args.name, image=args.image, flavor=args.flavor, vcpus=args.vcpus,
            memory=args.memory,
            network=args.networks or None,
            user_data=read_user_data(args.user_data, namespace), key=args.key,
            count=args.count, wait=not args.no_wait, volumes=args.volumes,
            keep=args.keep, progress=launch_progress(), screen=args.screen,
            sync=args.sync, provision=read_user_data(args.provision, namespace,
                                                     "--provision"), boot=args.boot,
                                                     host=args.host)
        return result
    if args.verb == "migrate":
        from nbcloud.ui.progress import PhaseProgress
        done = cloud.hosts.migrate(args.name, args.to,
                                   progress=PhaseProgress(f"migrate {args.name}"))
        downtime = done.get("downtime_ms")
        return Message(f"migrated {args.name} from {done['from']} to {done['to']} live in "
                       f"{done['seconds']:.1f} s"
                       + (f" (paused {downtime} ms)" if downtime is not None else ""))
    if args.verb == "provision":
        inst = cloud.instances.get(args.name)
        if args.log or not args.script:
            return inst.provision_log(wait=60.0)
        return inst.provision(read_user_data(args.script, namespace, "provision"))
    if args.verb == "list":
        return cloud.instances.table()
    if args.verb == "ssh":
        command = remote_command(args.command)
        return SSHOutput(cloud.instances.get(args.name).ssh_result(command, check=False))
    if args.verb == "resize":  # the new size is checked before the instance is looked up
        if args.flavor is None and args.vcpus is None and args.memory is None:
            raise CommandError("instance resize NAME: give --flavor F, or --vcpus N "
                               "--memory M")
        flavor = choose(args.flavor, args.vcpus, args.memory)
    inst = cloud.instances.get(args.name)
    if args.verb == "show":
        return inst
    if args.verb == "snapshot":
        inst.snapshot(args.snapshot)
        return Message(f"snapshot {args.snapshot} of {args.name} taken "
                       f"(snapshots: {', '.join(inst.snapshots())})")
    if args.verb == "revert":
        inst.revert(args.snapshot)
        return Message(f"{args.name} is back at snapshot {args.snapshot}")
    if args.verb == "resize":
        how = inst.resize(flavor)
        return Message(f"{args.name} is now {flavor} ({how})")
    if args.verb == "console":
        from nbcloud.ui import console
        return console.show(inst, timeout=args.timeout)
    if args.verb == "screenshot":
        return inst.screenshot()
    if args.verb == "terminal":
        from nbcloud.ui import terminal
        return terminal.widget(inst, serial=args.serial)
    if args.verb == "delete":
        inst.delete(volumes=args.volumes)
        return Message(f"deleted instance {args.name}"
                       + (" and its data volumes" if args.volumes else ""))
    if args.verb == "stop":
        return Message(f"stopped instance {args.name} ({inst.stop()})")
    if args.verb == "start":
        inst.start()
        return inst
    inst.reboot()
    return Message(f"rebooting instance {args.name}")


def remote_command(words: list[str]) -> str:
    """The shell command line of `instance ssh NAME -- ...`.

    The magic hands over the raw text after `--` as one word, run as it is. From a shell
    (`nbcloud instance ssh web -- ...`) one word is a command line too (`-- 'dmesg | tail'`);
    several words are quoted one by one, so the guest gets the very words the local shell
    made (`-- grep -m1 'model name' /proc/cpuinfo`)."""
    words = words[1:] if words[:1] == ["--"] else words
    if not words or not "".join(words).strip():
        raise CommandError("instance ssh NAME -- COMMAND: give a command after --")
    return words[0] if len(words) == 1 else shlex.join(words)


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
        return f"<pre>{html.escape(str(self))}</pre>"

