"""`ssh.run` against a real SSH server in this process (paramiko's server side, on
loopback): stdout and stderr are read as they come, whichever fills first, and what is
kept of each is capped, with the result saying how much was cut."""
from __future__ import annotations

import socket
import threading
import time

import paramiko
import pytest

from nbcloud.core.errors import SSHError
from nbcloud.services import ssh

MiB = 1 << 20
# command -> (stdout bytes, stderr bytes, exit status): what the server sends, stderr first
SCRIPTS = {
    "stderr-burst": (b"done\n", b"e" * (3 * MiB) + b"\nlast stderr line\n", 0),
    "both-big": (b"o" * (3 * MiB), b"x" * (3 * MiB) + b"\nthe end\n", 3),
    "small": (b"hello\n", b"warning\n", 0),
}


class _Server(paramiko.ServerInterface):
    def check_auth_none(self, username):
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username):
        return "none"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command):
        out, err, rc = SCRIPTS[command.decode()]

        def play():
            channel.sendall_stderr(err)      # stderr first: it fills the window
            channel.sendall(out)
            channel.send_exit_status(rc)
            channel.shutdown_write()
            channel.close()
        # written once paramiko has answered the request, as a real sshd does: it answers
        # after this method returns, and nothing marks that moment (a close that comes
        # before the answer makes the client's exec fail, which no real server does)
        timer = threading.Timer(0.2, play)
        timer.daemon = True
        timer.start()
        return True


@pytest.fixture(scope="module")
def client():
    """An SSH client logged in to a paramiko server on 127.0.0.1."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    host_key = paramiko.RSAKey.generate(2048)
    transports = []

    def serve():
        sock, _ = listener.accept()
        t = paramiko.Transport(sock)
        t.add_server_key(host_key)
        t.start_server(server=_Server())
        transports.append(t)
    threading.Thread(target=serve, daemon=True).start()
    c = paramiko.SSHClient()
    c.get_host_keys().add(f"[127.0.0.1]:{listener.getsockname()[1]}", host_key.get_name(),
                          host_key)
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    port = listener.getsockname()[1]
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.start_client(timeout=10)
    transport.auth_none("test")
    c._transport = transport            # the SSHClient's own connect needs a key
    yield c
    c.close()
    listener.close()
    for t in transports:
        t.close()


def test_a_command_filling_stderr_first_does_not_stall(client):
    start = time.monotonic()
    r = ssh.run(client, "stderr-burst", timeout=15)
    assert time.monotonic() - start < 10
    assert (r.returncode, r.stdout) == (0, "done\n")
    assert r.stderr.endswith("last stderr line\n")


def test_what_is_kept_is_capped_and_the_result_says_so(client):
    r = ssh.run(client, "both-big", timeout=15, check=False, keep=MiB)
    assert r.returncode == 3
    assert (r.stdout_cut, r.stderr_cut) == (2 * MiB, 2 * MiB + len("\nthe end\n"))
    # stdout keeps its beginning, stderr its end (where the error is)
    assert r.stdout.startswith("o" * 1000) and "not kept" in r.stdout.splitlines()[-1]
    assert "the end" in r.stderr and "not kept" in r.stderr.splitlines()[0]
    assert len(r.stdout) < MiB + 200 and len(r.stderr) < MiB + 200
    with pytest.raises(SSHError, match="status 3: the end"):
        ssh.run(client, "both-big", timeout=15, keep=MiB)


def test_small_output_is_kept_whole(client):
    r = ssh.run(client, "small", timeout=15)
    assert (r.stdout, r.stderr, r.stdout_cut, r.stderr_cut) == ("hello\n", "warning\n", 0, 0)
