"""The load balancer engine: one supervised HAProxy process per balancer, in TCP mode.

Why HAProxy rather than nftables `numgen`: nftables spreads packets but has no health
checks, so a dead member would keep getting its share of connections until something
else rewrote the rules; HAProxy (Debian's package) checks every member once a second
(`check inter 1s fall 2 rise 1`: out after two failed checks, back after one good one)
and offers round-robin and least-connections. The price is a user-space hop per
connection, which does not matter at a teaching host's rates.

The process runs in the caller's network namespace (nbcloud and the daemon share it in
the tests and the lab), listens on the network's gateway address at the balancer's
port, and is supervised by a pid file: `ensure` starts it again if it died, `reload`
hands the listening socket over to a new process with the new configuration (`-sf`).
Starts, ensures and stops of one balancer hold a file lock: a kernel applying a change
and the host agent restarting a dead process never run two HAProxys for one balancer
(HAProxy binds with SO_REUSEPORT, so the second would not even fail).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nbcloud.core import config
from nbcloud.core.errors import CloudError, HostError
from nbcloud.providers.libvirt.local import is_local

HEALTH_CHECK = "check inter 1s fall 2 rise 1"


@dataclass(frozen=True)
class Backend:
    """One member as HAProxy sees it."""
    name: str
    ip: str
    port: int


def config_text(name: str, listen_ip: str, port: int, algorithm: str,
                backends: list[Backend], keep_client_address: bool = False,
                stats_socket: Path | None = None) -> str:
    """The HAProxy configuration of balancer `name` (every value validated upstream:
    names match the name allow-list, addresses are parsed IPv4 addresses)."""
    lines = [
        f"# nbcloud load balancer {name}: generated from the inventory, do not edit",
        "global",
        "    maxconn 512",
    ]
    if stats_socket is not None:  # where `lb show` reads each member's health
        lines.append(f"    stats socket {stats_socket} mode 600 level user")
    lines += [
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        # a connection that finds its member dead is sent to another one
        "    retries 2",
        "    option redispatch",
        f"frontend {name}",
        f"    bind {listen_ip}:{port}",
        f"    default_backend {name}-members",
        f"backend {name}-members",
        f"    balance {algorithm}",
        f"    default-server {HEALTH_CHECK}",
    ]
    if keep_client_address:
        # transparent proxying: connect to the member from the client's own address
        # (needs TPROXY in the kernel and the reply path routed back; see tproxy_setup)
        lines.append("    source 0.0.0.0 usesrc clientip")
    lines += [f"    server {b.name} {b.ip}:{b.port}" for b in backends]
    return "\n".join(lines) + "\n"


def binary() -> str:
    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if
                                       os.path.exists("/usr/sbin/haproxy") else None)
    if not path:
        raise HostError("haproxy is not installed: `apt-get install haproxy` (scripts/"
                        "setup.sh does it); load balancers need it")
    return path


def check(text: str, workdir: Path) -> None:
    """Let HAProxy itself validate a configuration (`haproxy -c`); CloudError if not."""
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".check-", suffix=".cfg", dir=workdir)
    path = Path(name)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        out = subprocess.run([binary(), "-c", "-q", "-f", str(path)], capture_output=True,
                             text=True, timeout=30, check=False)
    finally:
        path.unlink(missing_ok=True)
    if out.returncode != 0:
        why = (out.stderr or out.stdout).strip().splitlines()
        raise CloudError(f"haproxy refused the configuration: {why[-1] if why else '?'}")


class Process:
    """The HAProxy process of one balancer: its config and pid files live in `workdir`."""

    def __init__(self, workdir: Path, name: str):
        self.workdir = workdir
        self.cfg = workdir / f"{name}.cfg"
        self.pidfile = workdir / f"{name}.pid"
        self.socket = workdir / f"{name}.sock"
        self.lockfile = workdir / f"{name}.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This balancer's start/stop lock, across processes (flock, freed at exit)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.lockfile, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def pid(self) -> int | None:
        """The pid of the running process, or None (stale pid files are ignored)."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        # the pid may have been reused by another program: it must be our haproxy
        return pid if self._serves(pid) else None

    def _serves(self, pid: int) -> bool:
        """Whether `pid` is a live (not zombie) HAProxy started with this config file."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return bool(argv) and argv[0].endswith(b"haproxy") and \
            str(self.cfg).encode() in argv and state != "Z"

    def alive(self) -> bool:
        return self.pid() is not None

    def write(self, text: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.cfg.name}-", dir=self.workdir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.cfg)

    def start(self, text: str) -> int:
        """Write `text` and (re)start: a running process hands over to the new one."""
        with self._locked():
            return self._start(text)

    def _start(self, text: str) -> int:
        self.write(text)
        old = self.pid()
        argv = [binary(), "-D", "-p", str(self.pidfile), "-f", str(self.cfg)]
        if old:
            argv += ["-sf", str(old)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, check=False)
        if out.returncode != 0:
            why = (out.stderr or out.stdout).strip().splitlines()
            raise CloudError(f"haproxy did not start: {why[-1] if why else 'no message'}")
        for _ in range(50):
            pid = self.pid()
            if pid and pid != old:
                return pid
            time.sleep(0.05)
        raise CloudError("haproxy did not start: it wrote no pid file")

    def ensure(self, text: str) -> bool:
        """Start the process if it is not running; True if it had to."""
        with self._locked():
            if self.alive() and self.cfg.exists() and self.cfg.read_text() == text:
                return False
            self._start(text)
            return True

    def stop(self) -> None:
        with self._locked():
            self._stop()

    def _stop(self) -> None:
        """Stop the process, and those it took over from that are still finishing
        their soft stop (each serves this config file until its last connection ends)."""
        pids = self.serving()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for _ in range(50):
            if not self.serving():
                break
            time.sleep(0.05)
        for path in (self.cfg, self.pidfile, self.socket):
            path.unlink(missing_ok=True)

    def serving(self) -> list[int]:
        """Pids of the HAProxy processes started with this balancer's config file."""
        return [int(pid) for pid in os.listdir("/proc") if pid.isdigit()
                and self._serves(int(pid))]

    def health(self) -> dict[str, str]:
        """member name -> 'UP', 'DOWN', ... as the running process sees it ({} if none)."""
        import socket
        if not self.alive() or not self.socket.exists():
            return {}
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return {}
        out = {}
        for line in data.decode(errors="replace").splitlines():
            fields = line.split(",")
            if len(fields) > 17 and not line.startswith("#") and \
                    fields[1] not in ("FRONTEND", "BACKEND"):
                out[fields[1]] = fields[17]
        return out


def tproxy_setup() -> str:
    """Route replies addressed to a client's address back to HAProxy's transparent
    sockets (`usesrc clientip`): mark packets of such sockets and deliver marked ones
    locally. Idempotent; returns '' or why it could not be done."""
    steps = [
        ["nft", "add", "table", "ip", "nbcloud_lb"],
        ["nft", "add", "chain", "ip", "nbcloud_lb", "divert",
         "{ type filter hook prerouting priority mangle; }"],
        ["nft", "flush", "chain", "ip", "nbcloud_lb", "divert"],
        ["nft", "add", "rule", "ip", "nbcloud_lb", "divert", "meta", "l4proto", "tcp",
         "socket", "transparent", "1", "meta", "mark", "set", "0x6e62", "accept"],
    ]
    for argv in steps:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return f"{' '.join(argv[:3])}: {out.stderr.strip()}"
    rules = subprocess.run(["ip", "rule", "show"], capture_output=True, text=True,
                           check=False).stdout
    if "0x6e62" not in rules:
        for argv in (["ip", "rule", "add", "fwmark", "0x6e62", "lookup", "2462"],
                     ["ip", "route", "replace", "local", "0.0.0.0/0", "dev", "lo",
                      "table", "2462"]):
            out = subprocess.run(argv, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                return f"{' '.join(argv[:3])}: {out.stderr.strip()}"
    return ""


def tproxy_teardown() -> None:
    """Undo `tproxy_setup` (when no balancer keeps client addresses any more)."""
    for argv in (["nft", "delete", "table", "ip", "nbcloud_lb"],
                 ["ip", "rule", "del", "fwmark", "0x6e62", "lookup", "2462"],
                 ["ip", "route", "flush", "table", "2462"]):
        subprocess.run(argv, capture_output=True, check=False)


class BalancerMixin:
    """The load-balancer operations of `LibvirtProvider` (providers/base.py, Balancers):
    one supervised HAProxy per balancer, beside the daemon, configured from the record."""

    uri: str

    @property
    def runs_balancers(self) -> bool:
        """Whether balancers run here as processes. The test driver has no bridge to
        listen on: configurations are generated and checked by `haproxy -c`, but no
        process is started."""
        return self.uri.startswith("qemu") and is_local(self.uri)

    @property
    def balancers_possible(self) -> bool:
        """Whether balancers can be made at all: beside a local daemon, or generated only
        (test driver)."""
        return self.runs_balancers or self.uri.startswith("test:")

    def _balancer_dir(self) -> Path:
        return config.home() / "lb"

    def balancer_process(self, name: str) -> Process:
        """The supervised HAProxy of balancer `name` (its pid file, config, socket)."""
        return Process(self._balancer_dir(), name)

    def balancer_config(self, name: str, spec: dict, addresses: dict[str, str]) -> str:
        port = spec.get("member_port") or spec["port"]
        backends = [Backend(m, addresses[m], port)
                    for m in spec["members"] if m in addresses]  # deleted ones drop out
        sock = self.balancer_process(name).socket if self.runs_balancers else None
        return config_text(name, spec["address"], spec["port"], spec["algorithm"],
                           backends, spec["keep_client_address"], sock)

    def apply_balancer(self, name: str, spec: dict, addresses: dict[str, str]) -> None:
        """Make balancer `name` serve `spec` (its record) over the members' `addresses`
        (member -> address on the balancer's network): checked, then (re)started."""
        text = self.balancer_config(name, spec, addresses)
        check(text, self._balancer_dir())
        if self.runs_balancers:
            if spec["keep_client_address"]:
                why = tproxy_setup()
                if why:
                    raise CloudError(f"cannot keep the client address here ({why}): "
                                     "create the balancer without --keep-client-address")
            self.balancer_process(name).start(text)

    def ensure_balancer(self, name: str, spec: dict, addresses: dict[str, str]) -> bool:
        """Start `name`'s HAProxy again if it is not running (or runs an old config)."""
        if not self.runs_balancers:
            return False
        process = self.balancer_process(name)
        if spec["keep_client_address"] and not process.alive():
            tproxy_setup()   # a host restart lost the mark rule and the policy route too
        return process.ensure(self.balancer_config(name, spec, addresses))

    def stop_balancer(self, name: str, *, last_keeping_client: bool = False) -> None:
        """Stop `name`'s HAProxy; `last_keeping_client` also removes the TPROXY set-up
        (no balancer keeps client addresses any more)."""
        self.balancer_process(name).stop()
        if self.runs_balancers and last_keeping_client:
            tproxy_teardown()

    def balancer_health(self, name: str) -> dict[str, str]:
        """member -> 'UP' / 'DOWN' / ... from HAProxy's own health checks."""
        return self.balancer_process(name).health()

    def balancer_running(self, name: str) -> bool | None:
        """Whether `name`'s HAProxy runs (None where balancers are not processes)."""
        return self.balancer_process(name).alive() if self.runs_balancers else None

    def stop_balancers(self) -> list[str]:
        """Stop every balancer process of this user (host down: they would not survive a
        reboot either); their records stay, so they start again from them."""
        done = []
        for pidfile in sorted(self._balancer_dir().glob("*.pid")):
            process = self.balancer_process(pidfile.stem)
            if process.alive():
                process.stop()
                done.append(f"stopped load balancer {pidfile.stem}")
        return done
