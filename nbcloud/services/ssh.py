"""SSH to instances with paramiko: the host key is pinned (from the seed nbcloud wrote),
unknown or changed keys are rejected, never auto-added."""
from __future__ import annotations

import base64
import binascii
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from nbcloud.core.errors import SSHError


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return self.stdout


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
    return client


def run(client: paramiko.SSHClient, command: str, *, timeout: float = 300.0,
        check: bool = True) -> CommandResult:
    """Run `command` in the instance's shell; raise SSHError on a non-zero exit if `check`."""
    try:
        _, out, err = client.exec_command(command, timeout=timeout)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        rc = out.channel.recv_exit_status()
    except (paramiko.SSHException, OSError) as exc:
        raise SSHError(f"command failed on the way: {exc}") from None
    if check and rc != 0:
        tail = stderr.strip().splitlines()[-1:] or [""]
        raise SSHError(f"command exited with status {rc}: {tail[0]}", returncode=rc,
                       stdout=stdout, stderr=stderr)
    return CommandResult(rc, stdout, stderr)
