#!/usr/bin/env python3
"""Boot the tiny image under plain qemu (TCG) and time it.

Builds the image and a NoCloud seed (fresh client key and host key), boots with direct
kernel boot, the seed as a virtio disk and virtio-net on QEMU user networking whose only
way in is a hostfwd on 127.0.0.1 (restrict=on: the guest reaches nothing outside).
Measures, from qemu's start: the `nbcloud-ready` serial line, a paramiko exec of
`uname -a` with the host key pinned from the seed, and user-data completion; then
checks runcmd's output over SSH, a reboot from inside, and an ACPI power-button
shutdown.  Development tool, not part of the package.

    .venv/bin/python scripts/tiny-qemu-try.py --runs 3
    .venv/bin/python scripts/tiny-qemu-try.py --machine q35 --append-extra initcall_debug
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbcloud.core.cloudinit import StaticNet, build_seed, new_host_key  # noqa: E402
from nbcloud.images.tiny import build_tiny  # noqa: E402

MAC = "52:54:00:12:34:56"
USER_DATA = """#cloud-config
runcmd:
  - echo runcmd-ran > /root/runcmd-ok
  - [sh, -c, "uname -r >> /root/runcmd-ok"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_command(args, image, initrd: Path, seed: Path, port: int, qmp: Path) -> list[str]:
    cmdline = args.append or image.cmdline
    if args.append_extra:
        cmdline = f"{cmdline} {args.append_extra}"
    machine = args.machine
    cmd = ["qemu-system-x86_64", "-accel", args.accel, "-machine", machine, "-cpu", args.cpu,
           "-m", str(args.memory), "-smp", str(args.smp), "-nodefaults", "-no-user-config",
           "-display", "none", "-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0",
           "-kernel", str(args.kernel or image.kernel), "-initrd", str(initrd), "-append", cmdline,
           "-drive", f"file={seed},if=none,id=seed,format=raw,readonly=on",
           "-device", "virtio-blk-pci,drive=seed",
           "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
           "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
           "-qmp", f"unix:{qmp},server=on,wait=off"]
    if args.rng:
        cmd += ["-object", "rng-random,id=rng0,filename=/dev/urandom",
                "-device", "virtio-rng-pci,rng=rng0"]
    return cmd + args.qemu_extra


class Serial(threading.Thread):
    """Reads the guest console, keeps the log and the time of each line."""

    def __init__(self, proc: subprocess.Popen, t0: float, echo: bool) -> None:
        super().__init__(daemon=True)
        self.proc, self.t0, self.echo = proc, t0, echo
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.log: list[str] = []

    def run(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            dt = time.monotonic() - self.t0
            self.log.append(f"{dt:7.3f} {line}")
            if self.echo:
                print(f"  [{dt:6.2f}] {line}", flush=True)
            self.lines.put((dt, line))

    def seen(self, text: str, timeout: float) -> None:
        """Wait until ``text`` is anywhere in the log, consumed by wait_for or not."""
        end = time.monotonic() + timeout
        while not any(text in line for line in self.log):
            if time.monotonic() > end:
                raise TimeoutError(f"no {text!r} on the console in {timeout} s")
            time.sleep(0.05)

    def wait_for(self, prefix: str, timeout: float) -> tuple[float, str]:
        end = time.monotonic() + timeout
        while True:
            try:
                dt, line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {prefix!r} on the console in {timeout} s") from None
            if prefix in line:
                return dt, line


def ssh_client(port: int, host_pub: str, client_pem: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    kind, blob = host_pub.split()[:2]
    client.get_host_keys().add(f"[127.0.0.1]:{port}", kind,
                               paramiko.Ed25519Key(data=base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(client_pem))
    client.connect("127.0.0.1", port, username="root", pkey=key, timeout=5,
                   banner_timeout=5, auth_timeout=5, allow_agent=False, look_for_keys=False)
    return client


def ssh_exec(port, host_pub, client_pem, command: str, deadline: float) -> str:
    """Run ``command``, retrying the connection until ``deadline`` (monotonic)."""
    while True:
        try:
            with ssh_client(port, host_pub, client_pem) as client:
                _, out, err = client.exec_command(command, timeout=20)
                status = out.channel.recv_exit_status()
                text = out.read().decode()
                if status != 0:
                    raise RuntimeError(f"{command!r} exited {status}: {err.read().decode()}")
                return text
        except (paramiko.SSHException, OSError, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fingerprint(public: str) -> str:
    digest = hashlib.sha256(base64.b64decode(public.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def qmp(path: Path, command: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        f = s.makefile("rw")
        f.readline()
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}) + "\n")
            f.flush()
            f.readline()


def one_boot(args, image, initrd: Path, work: Path, run: int) -> dict[str, float]:
    host, client = new_host_key("tiny-host"), new_host_key("tiny-client")
    seed = work / f"seed-{run}.iso"
    network = None if args.dhcp else StaticNet(MAC, "10.0.2.15/24", "10.0.2.2", ("10.0.2.3",))
    build_seed(seed, instance_id=f"i-try-{run}", hostname=f"tiny-{run}",
               authorized_keys=[client.public], host_key_private=host.private,
               host_key_public=host.public, network=network, user_data=USER_DATA)
    port, sock = free_port(), work / f"qmp-{run}.sock"
    cmd = qemu_command(args, image, initrd, seed, port, sock)
    if args.verbose:
        print(" ".join(cmd))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    serial = Serial(proc, t0, args.verbose)
    serial.start()
    result: dict[str, float] = {}
    try:
        result["ready"], line = serial.wait_for("nbcloud-ready", args.timeout)
        uname = ssh_exec(port, host.public, client.private, "uname -a", t0 + args.timeout)
        result["ssh"] = time.monotonic() - t0
        result["userdata"], done = serial.wait_for("nbcloud-userdata-done", args.timeout)
        print(f"  {line}\n  {uname.strip()}\n  {done}")
        if args.checks:
            ran = ssh_exec(port, host.public, client.private, "cat /root/runcmd-ok", t0 + 60)
            assert ran.startswith("runcmd-ran\n"), ran
            serial.seen("-----END SSH HOST KEY KEYS-----", 30)
            want = fingerprint(host.public)
            assert any(f"256 {want} root@" in ln for ln in serial.log), "fingerprint missing"
            print(f"  runcmd ok; console fingerprint {want} matches the seed's key")
            ssh_exec(port, host.public, client.private, "reboot", t0 + 60)
            t1 = time.monotonic()
            serial.wait_for("nbcloud-ready", args.timeout)
            print(f"  reboot from inside: ready again after {time.monotonic() - t1:.2f} s")
        t1 = time.monotonic()
        qmp(sock, "system_powerdown")
        try:
            proc.wait(timeout=30)
            result["poweroff"] = time.monotonic() - t1
        except subprocess.TimeoutExpired:
            print("  ACPI power button: the guest did not power off in 30 s")
            result["poweroff"] = float("nan")
    except BaseException:
        Path(work / "serial.log").write_text("\n".join(serial.log))
        print("\n".join(serial.log[-40:]))
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if args.serial_log:
        Path(args.serial_log).write_text("\n".join(serial.log) + "\n")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache/nbcloud/images")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--machine", default="pc")
    p.add_argument("--cpu", default="max")
    p.add_argument("--accel", default="tcg")
    p.add_argument("--memory", type=int, default=256, help="MiB")
    p.add_argument("--smp", type=int, default=1)
    p.add_argument("--append", help="replace the image's kernel command line")
    p.add_argument("--append-extra", default="", help="add to the kernel command line")
    p.add_argument("--kernel", type=Path, help="boot this kernel instead (e.g. a PVH vmlinux)")
    p.add_argument("--gzip", action="store_true", help="boot a gzip'd copy of the initramfs")
    p.add_argument("--rng", action="store_true", help="add virtio-rng-pci")
    p.add_argument("--dhcp", action="store_true", help="no network-config: DHCP only")
    p.add_argument("--no-checks", dest="checks", action="store_false",
                   help="skip the runcmd / reboot checks")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--serial-log", help="write the timed console log here")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("qemu_extra", nargs="*", help="more qemu arguments (after --)")
    args = p.parse_args()

    t = time.monotonic()
    image = build_tiny(args.cache, progress=lambda m: print(f"build: {m}"))
    print(f"image {image.digest[:12]} ({time.monotonic() - t:.1f} s); cmdline: {image.cmdline}")
    with tempfile.TemporaryDirectory(prefix="tiny-try-") as tmp:
        work = Path(tmp)
        initrd = image.initrd
        if args.gzip:
            initrd = work / "initrd.gz"
            initrd.write_bytes(gzip.compress(image.initrd.read_bytes(), 6, mtime=0))
        print(f"initrd {initrd.stat().st_size // 1024} KiB")
        results = []
        for run in range(args.runs):
            r = one_boot(args, image, initrd, work, run)
            print(f"run {run}: " + "  ".join(f"{k} {v:.2f} s" for k, v in r.items()))
            results.append(r)
        if args.runs > 1:
            print("median: " + "  ".join(
                f"{k} {statistics.median(r[k] for r in results):.2f} s" for k in results[0]))


if __name__ == "__main__":
    main()
