"""Networks that span hosts: the kernel's VXLAN between the hosts' bridges.

A network of a cloud of several hosts keeps one DHCP/DNS authority, the host it was made
on (its libvirt network has the gateway address, dnsmasq and NAT). Every other host with
an instance on it gets a *member* network of the same name: a libvirt network with the
same bridge name and no address, so no DHCP server and no route of its own. Each of those
bridges gets a VXLAN device (`nbv-` and the VNI in hex) whose forwarding database floods
broadcast and unknown frames to every other host of the network (one all-zero entry per
peer: head-end replication, no multicast), and learns where each MAC is from the frames
that come back, as OpenStack's Linux bridge agent does without l2population. A guest that
migrates announces its MAC from its new host (QEMU sends the announcement), and the
peers learn the new place from that.

The VXLAN devices are set up with `ip` and `bridge` (iproute2) on each host: locally for a
local URI, over SSH with the user's own keys for `qemu+ssh://` (the credentials libvirt
itself uses for that URI). libvirt has no API for a VXLAN device.

The VXLAN device's MTU is 1500, like the guests': frames of 1500 bytes become UDP
datagrams of 1550, which the kernel fragments on a 1500-byte fabric (VXLAN sets no DF
bit), so guests need no smaller MTU.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shlex
import socket
import subprocess
import tempfile
import zlib
from pathlib import Path
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from nbcloud.core.errors import CloudError, Unsupported

VXLAN_PORT = 4789            # IANA's
DEVICE_PREFIX = "nbv-"
ZERO_MAC = "00:00:00:00:00:00"
_SSH_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,253}")


def vni(network: str) -> int:
    """The VXLAN network identifier of network `network`: the same on every host, with
    no coordination (a 24-bit hash of the name; 0 is avoided)."""
    return zlib.crc32(network.encode()) % 0xFFFFFE + 1


def device(network: str) -> str:
    """The VXLAN device of network `network` (at most 10 characters)."""
    return f"{DEVICE_PREFIX}{vni(network):06x}"


class HostShell:
    """Runs iproute2 commands on one host: here, or over SSH for `qemu+ssh://` URIs."""

    def __init__(self, host: str, uri: str, local: bool):
        self.host, self.uri = host, uri
        parts = urlsplit(uri)
        self.prefix: list[str] | None = None
        self.control: Path | None = None
        if local:
            self.prefix = []
        elif parts.scheme in ("qemu+ssh", "qemu+libssh", "qemu+libssh2") and parts.hostname:
            if not _SSH_WORD.fullmatch(parts.hostname) or \
                    (parts.username and not _SSH_WORD.fullmatch(parts.username)):
                raise CloudError(f"host {host}: {uri!r} names a user or host nbcloud will "
                                 "not pass to ssh (letters, digits, '.', '_', '-' only)")
            target = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
            options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
            if parts.port:
                options += ["-p", str(parts.port)]
            keyfile = parse_qs(parts.query).get("keyfile")
            if keyfile:
                options += ["-i", keyfile[0]]
            # one SSH connection per host, reused by the commands that follow (a key
            # exchange costs most of a second on a busy host); it ends a minute after
            # the last command
            self.control = control_folder() / f"{target}:{parts.port or 22}"
            self.master = ["ssh", *options, "-o", "ControlMaster=yes",
                           "-o", "ControlPersist=60", "-o", f"ControlPath={self.control}",
                           "-f", "-N", "--", target]
            self.check = ["ssh", "-o", f"ControlPath={self.control}", "-O", "check", "--",
                          target]
            self.prefix = ["ssh", *options, "-o", f"ControlPath={self.control}",
                           "--", target]

    def _connect(self) -> None:
        """Start the shared connection unless one is up (its process forks away: no
        pipe of ours may stay open in it)."""
        if self.control is None:
            return
        if self.control.exists():
            alive = subprocess.run(self.check, stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=10, check=False).returncode == 0
            if alive:
                return
            self.control.unlink(missing_ok=True)   # its master was killed: a stale socket
        subprocess.run(self.master, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)

    def require(self) -> None:
        """Unsupported (one line) if nbcloud has no shell on this host."""
        if self.prefix is None:
            raise Unsupported(f"host {self.host} ({self.uri}) offers nbcloud no shell: a "
                              "network spanning hosts is joined by the kernel's VXLAN, set "
                              "up over SSH; add the host as qemu+ssh://USER@ADDRESS/system")

    def run(self, *argv: str, check: bool = True) -> str:
        """Run `argv` on the host; its standard output. CloudError naming the host if it
        fails (and `check`)."""
        return self.script([list(argv)], check=check)

    def script(self, commands: list[list[str]], check: bool = True) -> str:
        """Run `commands` on the host one after the other, in one go (one SSH session),
        stopping at the first that fails; their standard output."""
        self.require()
        # every word quoted: over SSH the line reaches a remote shell
        line = " && ".join(" ".join(shlex.quote(w) for w in argv) for argv in commands)
        shown = "; ".join(" ".join(argv) for argv in commands)
        self._connect()
        cmd = [*self.prefix, line] if self.prefix else ["sh", "-c", line]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CloudError(f"host {self.host}: `{shown}` did not run: {exc}") from None
        if check and out.returncode != 0:
            why = (out.stderr.strip().splitlines() or ["no message"])[-1]
            raise CloudError(f"host {self.host}: `{shown}` failed: {why}")
        return out.stdout


def control_folder() -> Path:
    """This user's folder for SSH connection sockets (0700)."""
    folder = Path(tempfile.gettempdir()) / f"nbcloud-ssh-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise CloudError(f"{folder} is not this user's own folder: remove it")
    return folder


def resolve(hostname: str) -> str:
    """An IPv4 address of `hostname` (an address is returned as it is)."""
    try:
        return str(ipaddress.IPv4Address(hostname))
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(hostname, None, socket.AF_INET)[0][4][0]
    except (OSError, IndexError):
        raise CloudError(f"cannot resolve host name {hostname!r}: give the host's address "
                         "with --address") from None


def source_address(shell: HostShell, towards: str) -> str:
    """The address host `shell` sends from when it reaches `towards` (its tunnel end)."""
    out = shell.run("ip", "-o", "-4", "route", "get", towards)
    m = re.search(r"\bsrc (\d+\.\d+\.\d+\.\d+)", out)
    if not m:
        raise CloudError(f"host {shell.host} has no route to {towards}: give its address "
                         "with --address")
    return m.group(1)


@dataclass(frozen=True)
class Member:
    """One host of a spanning network: how to reach its shell, its tunnel address and
    the network's bridge there."""
    shell: HostShell
    address: str
    bridge: str


def flood_list(shell: HostShell, dev: str) -> set[str] | None:
    """The peers `dev` floods to (its all-zero FDB entries); None if there is no `dev`."""
    out = shell.script([["ip", "-o", "link", "show", "dev", dev],
                        ["bridge", "fdb", "show", "dev", dev]], check=False)
    first = out.splitlines()[0] if out else ""
    if f" {dev}: " not in first:
        return None
    return {m.group(1) for m in re.finditer(rf"^{ZERO_MAC} dst (\S+)", out, re.M)}


def join(network: str, members: list[Member]) -> list[str]:
    """Make network `network`'s VXLAN mesh over `members` what it should be: on each, a
    device on the network's bridge that floods to every other member. Idempotent; one
    look and at most one change per host; returns what it changed."""
    dev, done = device(network), []
    for m in members:
        peers = {p.address for p in members if p is not m}
        have = flood_list(m.shell, dev)
        steps = []
        if have is None:
            steps.append(["ip", "link", "add", dev, "type", "vxlan", "id",
                          str(vni(network)), "dstport", str(VXLAN_PORT), "local", m.address])
            have = set()
            done.append(f"VXLAN {dev} on {m.shell.host}")
        steps.append(["ip", "link", "set", dev, "mtu", "1500", "master", m.bridge, "up"])
        for peer in sorted(peers - have):
            steps.append(["bridge", "fdb", "append", ZERO_MAC, "dev", dev, "dst", peer])
            done.append(f"{m.shell.host} floods {network} to {peer}")
        for gone in sorted(have - peers):
            steps.append(["bridge", "fdb", "del", ZERO_MAC, "dev", dev, "dst", gone])
        m.shell.script(steps)
    return done


def leave(network: str, shell: HostShell) -> None:
    """Remove network `network`'s VXLAN device from one host (it may be gone already)."""
    shell.run("ip", "link", "del", device(network), check=False)
