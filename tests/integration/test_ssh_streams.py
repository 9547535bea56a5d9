"""SSH to a real guest: a command that writes megabytes to stderr before stdout neither
stalls nor fails, and output beyond what is kept is cut and said."""
from __future__ import annotations

import pytest

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
