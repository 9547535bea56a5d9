"""`%cloud export ansible|yaml` against real guests: real ansible-core (PyPI) reaches the
running instances with strict host-key checking against the keys nbcloud pinned, refuses
an impostor key, and is not given the stopped one; the exported stack cell is a no-op."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbcloud.services import keys
from nbcloud.ui.commands import parse, run
from nbcloud.workflows.export import ansible_group
from tests.needs import program

STACK = "nc-ans"
BODY = f"instance:\n  {STACK}: {{flavor: t.nano, count: 2}}\n"


@pytest.fixture(scope="module")
def two_instances(cloud):
    cloud.stacks.apply(STACK, BODY)
    yield [f"{STACK}-1", f"{STACK}-2"]
    cloud.stacks.destroy(STACK)


def ansible(inventory: Path, home: Path) -> subprocess.CompletedProcess:
    """`ansible GROUP -i INVENTORY -m raw -a hostname` for this stack's group (the daemon
    may run other instances that the inventory lists too), with its state under `home` (a
    new one per run: a live ControlPersist master would skip the host key check)."""
    program("ssh", "Ansible connects with OpenSSH's client (Debian openssh-client)")
    exe = Path(sys.executable).with_name("ansible")
    if not exe.exists():
        program("ansible", "ansible-core is in the test extras (pip install -e '.[test]')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_HOME=str(home), ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(home / "cp"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(exe), ansible_group(STACK), "-i", str(inventory), "-m", "raw",
                           "-a", "hostname", "--timeout", "30"], capture_output=True,
                          text=True, timeout=180, env=env)


def test_ansible_reaches_running_instances_with_strict_host_key_checking(
        cloud, two_instances, tmp_path):
    first, second = two_instances
    cloud.instances.get(second).stop()
    inventory = tmp_path / "hosts.ini"
    out = run(cloud, parse(["export", "ansible", "-o", str(inventory)]))
    text = inventory.read_text()
    assert text == str(out) and "StrictHostKeyChecking=yes" in text
    assert f"# {second} (stack {STACK}) is stopped, not running: left out" in text
    known = tmp_path / "hosts.known_hosts"
    # one line per running instance of the inventory (other tests' may be running too)
    pinned = {line.split()[0]: line.split()[1:] for line in known.read_text().splitlines()}
    head = cloud.instances.get(first)
    assert pinned[head.ip] == head.meta["hostkey"].split()[:2]
    assert cloud.instances.get(second).ip not in pinned

    done = ansible(inventory, tmp_path / "a1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{first} | CHANGED | rc=0 >>\n{first}" in done.stdout, done.stdout
    assert second not in done.stdout

    # an impostor: the pinned key replaced by another one is refused by Ansible's ssh
    impostor = keys.generate("impostor")[1].split()[:2]
    known.write_text(known.read_text().replace(" ".join(head.meta["hostkey"].split()[:2]),
                                               " ".join(impostor)))
    refused = ansible(inventory, tmp_path / "a2")
    assert refused.returncode != 0
    assert "Host key verification failed" in refused.stdout + refused.stderr, refused.stdout


def test_exported_stack_cell_is_a_no_op_on_the_real_daemon(cloud, two_instances, tmp_path):
    out = run(cloud, parse(["export", "yaml", "-o", str(tmp_path / "cells.txt")]))
    cell = next(part for part in str(out).split("%%cloud apply --stack ")
                if part.startswith(f"{STACK}\n"))
    assert cell.split("\n", 1)[1].strip() == BODY.strip()
    assert not cloud.stacks.plan(STACK, cell.split("\n", 1)[1])
    # and what the stack made is there, as the cell says
    assert {cloud.provider.state(n) for n in two_instances} <= {"running", "stopped"}
