"""SSH to instances with paramiko: the host key is pinned (from the seed nbcloud wrote),
unknown or changed keys are rejected, never auto-added."""
from __future__ import annotations

import base64
import binascii
import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from nbcloud.core.errors import SSHError


# What `run` keeps of each stream: the first part of stdout, the last of stderr (where an
# error says what went wrong); the result counts what it had to leave out.
OUTPUT_KEEP = 16 << 20
_CHUNK = 1 << 16


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    stdout_cut: int = 0          # bytes of stdout not kept (after the first OUTPUT_KEEP)
    stderr_cut: int = 0          # bytes of stderr not kept (before the last OUTPUT_KEEP)

    def __str__(self) -> str:
        return self.stdout


class _Kept:
    """What is kept of one stream: its first `keep` bytes (`head`), or its last."""

    def __init__(self, keep: int, head: bool):
        self.keep, self.head = keep, head
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.head:
            self.data += chunk[:max(0, self.keep - len(self.data))]
        else:
            self.data += chunk
            del self.data[:max(0, len(self.data) - self.keep)]

    @property
    def cut(self) -> int:
        return self.total - len(self.data)

    def text(self, stream: str) -> str:
        text = self.data.decode(errors="replace")
        if not self.cut:
            return text
        note = (f"[nbcloud: {self.cut} more bytes of {stream} were not kept (the "
                f"{'first' if self.head else 'last'} {self.keep} are)]")
        return f"{text}\n{note}\n" if self.head else f"{note}\n{text}"


def _drain(chan: paramiko.Channel, timeout: float, keep: int) -> tuple[_Kept, _Kept]:
    """Read stdout and stderr as either has data, until the command's end of output; an
    SSH channel has one flow-control window for both, so reading one to its end before
    the other stalls a command that fills the other first. `timeout`: seconds without
    any output."""
    out, err = _Kept(keep, head=True), _Kept(keep, head=False)
    idle_until = time.monotonic() + timeout
    while True:
        moved = False
        while chan.recv_ready():
            out.add(chan.recv(_CHUNK))
            moved = True
        while chan.recv_stderr_ready():
            err.add(chan.recv_stderr(_CHUNK))
            moved = True
        if (chan.eof_received or chan.closed) and not chan.recv_ready() and \
                not chan.recv_stderr_ready():
            return out, err
        now = time.monotonic()
        if moved:
            idle_until = now + timeout
        elif now >= idle_until:
            raise socket.timeout(f"no output for {timeout:.0f} s")
        select.select([chan], [], [], min(1.0, max(0.0, idle_until - now)))


def _pkey_from_public(line: str) -> paramiko.PKey:
    kind, blob = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


def public_key_fields(line: str) -> tuple[str, str]:
    """(type, base64 blob) of an OpenSSH public key line, checked by parsing the key;
    ValueError if it is not one."""
    try:
        key = _pkey_from_public(line)
    except (ValueError, TypeError, binascii.Error, paramiko.SSHException) as exc:
        raise ValueError(f"not an SSH public key: {exc}") from None
    return key.get_name(), base64.b64encode(key.asbytes()).decode()


def fingerprint(public_line: str) -> str:
    """SHA256 fingerprint as ssh-keygen prints it."""
    return _pkey_from_public(public_line).fingerprint


def wait_for_banner(host: str, port: int = 22, timeout: float = 60.0,
                    interval: float = 0.05, cancelled=None) -> float:
    """Poll until an SSH server answers with its banner; return seconds waited.
    `cancelled()` true gives up at once (raises KeyboardInterrupt, as Ctrl-C would)."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt(f"the wait for SSH on {host}:{port} was cancelled")
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                if sock.recv(64).startswith(b"SSH-"):
                    return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise SSHError(f"SSH on {host}:{port} did not answer within {timeout:.0f} s")
        time.sleep(interval)


def connect(host: str, *, host_key: str, key_path: Path, user: str = "root",
            port: int = 22, timeout: float = 20.0) -> paramiko.SSHClient:
    """An SSH client logged in to `host`, whose key must equal `host_key`."""
    client = paramiko.SSHClient()
    entry = host if port == 22 else f"[{host}]:{port}"
    pinned = _pkey_from_public(host_key)
    client.get_host_keys().add(entry, pinned.get_name(), pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        pkey = paramiko.Ed25519Key.from_private_key_file(str(key_path))
        client.connect(host, port=port, username=user, pkey=pkey, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=False, look_for_keys=False)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SSHError(f"{host} offered a host key that is not the one nbcloud pinned for "
                       "this instance: refusing to connect (the instance was replaced, "
                       f"or someone is in the middle; pinned {exc.expected_key.fingerprint}, "
                       f"offered {exc.key.fingerprint})") from None
    except (paramiko.SSHException, OSError) as exc:
        client.close()
        raise SSHError(f"SSH to {host}:{port} failed: {exc}") from None
    notice_a_dead_peer(client.get_transport().sock)
    return client


# TCP keepalive after this many seconds of quiet, then probes this far apart, this many;
# and how long sent data may go unacknowledged (ms): a dead peer is seen within ~15 s
DEAD_PEER = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 3,
             "TCP_USER_TIMEOUT": 15000}


def notice_a_dead_peer(sock: socket.socket) -> None:
    """Have the kernel end the connection when the instance stops answering mid-command
    (a reboot, a power-off, a host gone), as OpenSSH's ServerAliveInterval does: otherwise
    a command waits its whole timeout for output from a guest that no longer exists, and
    a rebooted guest, which knows nothing of the connection, cannot say so. A command
    that is merely quiet keeps its connection: a live guest answers the probes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in DEAD_PEER.items():
        if hasattr(socket, option):   # Linux has all four
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def run(client: paramiko.SSHClient, command: str, *, timeout: float = 300.0,
        check: bool = True, keep: int = OUTPUT_KEEP) -> CommandResult:
    """Run `command` in the instance's shell; raise SSHError on a non-zero exit if `check`.
    `timeout`: seconds the command may go without output. Of each stream at most `keep`
    bytes are kept (stdout's first, stderr's last), the rest counted and said."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise SSHError("command failed on the way: the SSH connection is closed")
    try:
        chan = transport.open_session(timeout=timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(command)
            out, err = _drain(chan, timeout, keep)
            rc = chan.recv_exit_status()
        finally:
            chan.close()
    except (paramiko.SSHException, OSError) as exc:
        raise SSHError(f"command failed on the way: {exc or type(exc).__name__}") from None
    if rc == -1 and not transport.is_active():   # no exit status: the connection ended
        raise SSHError("command failed on the way: the instance stopped answering and "
                       "the connection was closed (rebooted, stopped or unreachable?)")
    stdout, stderr = out.text("stdout"), err.text("stderr")
    if check and rc != 0:
        tail = stderr.strip().splitlines()[-1:] or [""]
        raise SSHError(f"command exited with status {rc}: {tail[0]}", returncode=rc,
                       stdout=stdout, stderr=stderr)
    return CommandResult(rc, stdout, stderr, out.cut, err.cut)
