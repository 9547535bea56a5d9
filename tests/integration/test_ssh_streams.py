"""SSH to a real guest: a command that writes megabytes to stderr before stdout neither
stalls nor fails, output beyond what is kept is cut and said, and a command whose guest
vanishes under it fails soon instead of waiting out its timeout."""
from __future__ import annotations

import threading

import pytest

from nbcloud.core.errors import SSHError

NAME = "sec-ssh"


@pytest.fixture(scope="module")
def guest(cloud):
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    inst = cloud.instances.create(NAME, image="tiny", flavor="m.nano", network="nbcloud")
    yield inst
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)


def test_megabytes_on_stderr_first_then_stdout(guest):
    r = guest.ssh_result("dd if=/dev/zero bs=1024 count=4096 2>/dev/null | tr '\\0' e >&2;"
                         " echo done", timeout=60)
    assert (r.returncode, r.stdout, r.stderr_cut) == (0, "done\n", 0)
    assert len(r.stderr) == 4096 * 1024


def test_output_past_what_is_kept_is_cut_and_said(guest):
    from nbcloud.services import ssh
    r = ssh.run(guest._ssh_client(), "dd if=/dev/zero bs=1024 count=3072 2>/dev/null",
                timeout=60, keep=1 << 20)
    assert r.stdout_cut == 2 << 20 and "not kept" in r.stdout.splitlines()[-1]


def test_a_guest_that_vanishes_mid_command_ends_the_command(cloud):
    """The guest is destroyed while a command runs on it: no FIN, no RST reaches the
    client (a rebooted guest would not know the connection either). TCP keepalive ends
    the connection within ~15 s; without it the command waited its whole timeout."""
    from nbcloud.services import ssh
    name = "sec-ssh-gone"
    if cloud.provider.exists(name):
        cloud.instances.delete(name)
    inst = cloud.instances.create(name, image="tiny", flavor="t.nano", network="nbcloud")
    try:
        client = inst._ssh_client()
        assert ssh.run(client, "echo up").stdout == "up\n"
        result: list[BaseException | object] = []

        def command() -> None:
            try:
                result.append(ssh.run(client, "sleep 200; echo late", timeout=300))
            except BaseException as exc:  # noqa: BLE001  (what the test looks at)
                result.append(exc)
        worker = threading.Thread(target=command, daemon=True)
        worker.start()
        worker.join(3)
        assert worker.is_alive()          # a quiet command keeps its connection
        cloud.provider.conn.lookupByName(name).destroy()
        worker.join(90)                   # far less than the command's own 300 s
        assert not worker.is_alive() and len(result) == 1
        assert isinstance(result[0], SSHError) and \
            "stopped answering" in str(result[0]), result
    finally:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
