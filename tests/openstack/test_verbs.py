"""nbcloud's instance verbs on a real OpenStack, each checked against what the cloud (an
admin's connection) and the guest show: --count, stop / start / reboot, the console log,
a snapshot to a Glance image and the revert (a rebuild from it), resize (Nova's resize,
confirmed), and delete taking the snapshots along."""
from __future__ import annotations

import pytest

from nbcloud.core.errors import CloudError
from tests.waiting import wait_for
from tests.openstack.conftest import fresh_instance, servers

NAME = "ok-verbs"


def boot_id(inst) -> str:
    return inst.ssh("cat /proc/sys/kernel/random/boot_id").strip()


def nova(admin_conn, name: str):
    (server,) = servers(admin_conn, name)
    return server


@pytest.fixture(scope="module")
def server(os_cloud):
    with fresh_instance(os_cloud, NAME, image="tiny", flavor="m.nano") as inst:
        yield inst


def test_stop_start_reboot(server, admin_conn):
    first = boot_id(server)
    assert server.stop() in ("graceful", "forced")
    assert nova(admin_conn, NAME).status == "SHUTOFF"
    assert server.state == "stopped"
    server.start()
    assert nova(admin_conn, NAME).status == "ACTIVE"
    second = boot_id(server)
    assert second != first
    server.reboot()
    seen: list[str] = []
    try:
        wait_for(lambda: _booted_again(server, second, seen), 300, "the rebooted server's SSH")
    except pytest.fail.Exception:   # say what the cloud and the guest showed meanwhile
        witness = nova(admin_conn, NAME)
        pytest.fail(f"no SSH to the rebooted server in 300 s; Nova: {witness.status} "
                    f"task={witness.task_state} power={witness.power_state}; last SSH "
                    f"error: {seen[-1:]}; console's end:\n{server.console()[-2500:]}")


def _booted_again(inst, before: str, seen: list[str]) -> bool:
    try:
        inst.close()
        return boot_id(inst) != before
    except CloudError as exc:
        seen.append(str(exc))
        return False


def test_console_log_is_novas(server, admin_conn):
    text = server.console()
    assert f"hostname={NAME}" in text and "nbcloud-ready" in text
    witness = admin_conn.compute.get_server_console_output(nova(admin_conn, NAME))["output"]
    assert "nbcloud-ready" in witness


def test_snapshot_to_an_image_and_revert_by_rebuild(os_cloud, server, admin_conn):
    server.snapshot("before")
    images = [i for i in admin_conn.image.images(owner=os_cloud.provider.project_id)
              if (i.properties or {}).get("nbcloud_snapshot_of") == NAME]
    assert [(i.name, i.status) for i in images] == [(f"{NAME}.before", "active")]
    assert server.snapshots() == ["before"]
    server.ssh("echo changed > /root/state")
    booted = boot_id(server)
    server.revert("before")
    # Nova rebuilt the server from the snapshot image: a fresh boot, the same host key
    assert nova(admin_conn, NAME).image["id"] == images[0].id
    assert boot_id(server) != booted
    assert server.ssh("cat /root/state 2>/dev/null || echo absent").strip() == "absent"


def test_resize_is_novas_resize_confirmed(os_cloud, server, admin_conn):
    before = int(server.ssh("awk '/MemTotal/ {print $2}' /proc/meminfo"))
    assert server.resize("m.micro") == "resized by the cloud"
    witness = nova(admin_conn, NAME)
    assert (witness.status, witness.flavor["original_name"]) == ("ACTIVE", "m.micro")
    assert server.flavor == "m.micro"
    after = int(server.ssh("awk '/MemTotal/ {print $2}' /proc/meminfo"))
    assert after > before + 200 * 1024, (before, after)   # 256 MiB -> 512 MiB


def test_count_makes_numbered_servers_in_parallel(os_cloud, admin_conn):
    made = os_cloud.instances.create("ok-count", image="tiny", flavor="m.nano", count=2)
    try:
        assert sorted(i.name for i in made) == ["ok-count-1", "ok-count-2"]
        for inst in made:
            assert nova(admin_conn, inst.name).status == "ACTIVE"
            assert inst.ssh("hostname").strip() == inst.name
    finally:
        for inst in made:
            inst.delete()
    assert servers(admin_conn, "ok-count-1") == servers(admin_conn, "ok-count-2") == []


def test_delete_takes_the_snapshots_along(os_cloud, server, admin_conn):
    os_cloud.instances.delete(NAME)
    assert servers(admin_conn, NAME) == []
    assert not [i for i in admin_conn.image.images(owner=os_cloud.provider.project_id)
                if (i.properties or {}).get("nbcloud_snapshot_of") == NAME]
