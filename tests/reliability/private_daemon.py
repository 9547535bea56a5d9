"""A private libvirtd for fault tests that kill the daemon: the shared one in netns
nbcloud-test serves everyone else's tests, which would see their connection dropped.

It runs in a network namespace of its own (so its bridges and dnsmasq cannot clash with
the shared daemon's), held open by a `sleep` so that a restarted daemon finds the bridges
and dnsmasq the killed one left (a named netns made from inside `ip netns exec` would not
outlive the test's mount namespace), and in a mount namespace where /etc/libvirt, /run/libvirt,
/var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt are folders of a private root.
It is reached by `qemu+unix:///system?socket=ROOT/run/libvirt-sock`. QEMU runs as root
and logs to files (no virtlogd), because the private root lives under a pytest tmp folder
that the libvirt-qemu user cannot traverse.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from nbcloud.providers.libvirt import nsexec

CLONE_NEWNET = 0x40000000
FOLDERS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
           "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}
# What the daemon reads from /etc/libvirt; not qemu/ or storage/ (the shared daemon's
# domains and pools, which a second daemon would autostart).
CONF = ("libvirt.conf", "libvirtd.conf", "qemu.conf", "nwfilter")
QEMU_CONF = """
user = "root"
group = "root"
stdio_handler = "file"
security_driver = "none"
"""
# runs in the new namespaces: a sysfs of this netns, the private folders, the cgroups
# (as nsexec.py does for the shared daemon), then become libvirtd
BOOT = """
import json, os, subprocess, sys
binds, mounts, argv = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:]
subprocess.run(["umount", "-l", "/sys"], check=True)
subprocess.run(["mount", "-t", "sysfs", "sysfs", "/sys"], check=True)
for src, dst in binds:
    os.makedirs(dst, exist_ok=True)
    subprocess.run(["mount", "--bind", src, dst], check=True)
for fstype, path, options in mounts:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", fstype, "-o", options, fstype, path], check=True)
os.execvp(argv[0], argv)
"""


def spawn(enter: list[str], root: Path, folders: dict[str, str], argv: list[str],
          answers, what: str, timeout: float) -> subprocess.Popen:
    """Run `argv` (libvirtd, or a shell that becomes it) in a mount namespace of its own,
    in the network namespace `enter` joins, with ROOT/SUB bound over each of `folders`
    (BOOT); return it once `answers()` holds. Its output goes to ROOT/libvirtd.out."""
    binds = [[str(root / sub), dst] for sub, dst in folders.items()]
    with open(root / "libvirtd.out", "ab") as log:   # the child keeps its own copy
        proc = subprocess.Popen(
            [*enter, "unshare", "--mount", "--propagation", "slave", sys.executable, "-c",
             BOOT, json.dumps(binds), json.dumps(nsexec.cgroup_mounts()), *argv],
            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): "
                               f"see {root / 'libvirtd.out'}")
        if answers():
            return proc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")


class PrivateDaemon:
    """A libvirtd of our own under `root`, in a network namespace of its own."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.holder: subprocess.Popen | None = None
        self.socket = self.root / "run" / "libvirt-sock"
        self.uri = f"qemu+unix:///system?socket={self.socket}"
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> None:
        for sub in FOLDERS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for name in CONF:
            src, dst = Path("/etc/libvirt", name), self.root / "etc" / name
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            elif src.exists():
                shutil.copy(src, dst)
        with open(self.root / "etc" / "qemu.conf", "a") as f:
            f.write(QEMU_CONF)
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        ours = os.stat("/proc/self/ns/net").st_ino
        for _ in range(100):  # until unshare has moved it, before it execs sleep
            if os.stat(f"/proc/{self.holder.pid}/ns/net").st_ino != ours:
                break
            time.sleep(0.02)
        subprocess.run([*self._enter(), "ip", "link", "set", "lo", "up"], check=True)

    @property
    def netns(self) -> str:
        """The path of its network namespace (what `host up`/`down` and the agent enter)."""
        assert self.holder is not None and self.holder.poll() is None
        return f"/proc/{self.holder.pid}/ns/net"

    @contextmanager
    def inside(self):
        """Run the calling thread, and the threads and programs it starts, in the daemon's
        network namespace (to reach its guests, bridges and nft tables), then return."""
        libc = ctypes.CDLL(None, use_errno=True)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(self.netns, os.O_RDONLY)
        try:
            if libc.setns(there, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the private daemon's netns")
            try:
                yield
            finally:
                libc.setns(home, CLONE_NEWNET)
        finally:
            os.close(there)
            os.close(home)

    def _enter(self) -> list[str]:
        assert self.holder is not None and self.holder.poll() is None
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net"]

    def start(self, timeout: float = 30.0) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = spawn(self._enter(), self.root, FOLDERS,
                          ["libvirtd", "--pid-file", str(self.root / "libvirtd.pid")],
                          self.answers, "the private libvirtd", timeout)

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup by the daemon (its guests live on)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def with_nbcloud_pools(self, tiny: str = "/var/lib/nbcloud/images") -> None:
        """nbcloud's image pool (the tiny image copied in from `tiny`) and instance pool,
        under its root."""
        from nbcloud.providers.libvirt.images import IMAGE_POOL
        from nbcloud.providers.libvirt.provider import LibvirtProvider
        from nbcloud.providers.libvirt.volumes import INSTANCE_POOL
        (self.root / "images").mkdir(exist_ok=True)
        for suffix in ("json", "vmlinuz", "initrd"):
            shutil.copy(f"{tiny}/tiny.{suffix}", self.root / "images")
        backend = LibvirtProvider(self.uri)
        backend.ensure_pool(IMAGE_POOL, str(self.root / "images"))
        backend.ensure_pool(INSTANCE_POOL, str(self.root / "instances"))
        backend.close()

    def wipe(self) -> None:
        """Start it if need be, then undefine every domain and network it has (all of
        them are the test's)."""
        import libvirt
        if self.proc is None or not self.answers():
            self.start()
        conn = libvirt.open(self.uri)
        for dom in conn.listAllDomains(0):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        for net in conn.listAllNetworks(0):
            if net.isActive():
                net.destroy()   # its dnsmasq, which would keep the namespace alive
            net.undefine()
        conn.close()

    def release_netns(self) -> None:
        """End the `sleep` holding the namespace (which goes once dnsmasq is gone too)."""
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
            self.holder = None
