"""Synced folders (virtiofs) and the shell provisioner on a real tiny guest."""
from __future__ import annotations

import subprocess

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import InvalidSpec
from nbcloud.ui import commands
from nbcloud.ui.commands import CommandError

NAME = "sg-sync"
PROVISION = """#!/bin/sh
echo "provisioned $(hostname)"
ls /mnt/host
"""


def cmd(cloud, words, namespace=None):
    return commands.run(cloud, commands.parse(words), namespace)


def virtiofsd_for(path: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines()
            if "virtiofsd" in line and f"source={path}" in line]


@pytest.fixture(scope="module")
def synced(cloud, tmp_path_factory):
    cloud.build_tiny()  # the image must carry virtiofs.ko (a cache hit when it does)
    host = tmp_path_factory.mktemp("sg-share")
    (host / "before.txt").write_text("written before boot\n")
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    inst = cmd(cloud, ["instance", "create", NAME, "--sync", f"{host}:/mnt/host",
                       "--provision", "$script"], {"script": PROVISION})
    yield inst, host
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)


def test_file_written_on_host_after_boot_appears_in_guest(cloud, synced):
    inst, host = synced
    assert "/mnt/host virtiofs" in inst.ssh("cat /proc/mounts")
    (host / "after.txt").write_text("written on the host after boot\n")
    assert inst.ssh("cat /mnt/host/after.txt") == "written on the host after boot\n"
    inst.ssh("echo from-guest > /mnt/host/guest.txt")
    assert (host / "guest.txt").read_text() == "from-guest\n"
    assert [(row["host folder"], row["guest folder"]) for row in
            cmd(cloud, ["sync", "list", NAME])] == [(str(host), "/mnt/host")]
    assert virtiofsd_for(str(host)), "libvirt started no virtiofsd for the folder"


def test_provisioner_output_is_recorded(cloud, synced):
    first = cmd(cloud, ["instance", "provision", NAME, "--log"])
    assert first.returncode == 0
    assert f"provisioned {NAME}" in first.output and "before.txt" in first.output
    ops = cloud.inventory.operations(20)
    assert any(o["verb"] == "provision log" and f"provisioned {NAME}" in o["detail"]
               for o in ops)
    now = cloud.instances.get(NAME).provision("echo on-demand; exit 3\n")
    assert (now.returncode, now.output.strip()) == (3, "on-demand")
    assert any(o["verb"] == "provision" and "rc=3" in o["detail"] and "on-demand" in
               o["detail"] for o in cloud.inventory.operations(20))


def test_bad_sync_paths_are_refused_and_nothing_is_made(cloud, synced, tmp_path):
    _, host = synced
    for words, match in (
            ([f"{host}/../etc:/mnt/x"], "'..'"),
            ([f"{tmp_path}/missing:/mnt/x"], "does not exist"),
            ([f"{host}:/mnt/../etc"], "'..'"),
            ([f"{host}:/etc"], "guest's own"),
            ([f"{host}"], "HOSTDIR:GUESTDIR")):
        with pytest.raises(InvalidSpec, match=match):
            cmd(cloud, ["instance", "create", "sg-bad", "--sync", *words])
        assert not cloud.provider.exists("sg-bad")
    with pytest.raises(CommandError, match="--provision"):
        cmd(cloud, ["instance", "create", "sg-bad", "--provision", "$nothing"], {})
    assert not cloud.provider.exists("sg-bad")
    assert not [r for r in cloud.inventory.resources(cloud.uri) if r.name == "sg-bad"]


def test_delete_stops_virtiofsd(cloud, synced):
    _, host = synced
    cloud.instances.delete(NAME)
    wait_for(lambda: not virtiofsd_for(str(host)), 10, "virtiofsd to stop")
