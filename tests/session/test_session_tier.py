"""The session tier end to end: no root, no bridge, user-mode networking, SSH through a
loopback port, storage under the user's home."""
from __future__ import annotations

import os
import socket

import pytest

from nbcloud.core import config
from nbcloud.core.errors import CloudError
from nbcloud.core.spec import InvalidSpec
from tests.waiting import wait_for


def test_runs_unprivileged_on_the_session_daemon(session_cloud):
    assert os.getuid() != 0
    assert session_cloud.uri == "qemu:///session"
    assert session_cloud.accelerator()["accelerator"] in ("tcg", "kvm")
    # the pools live in the user's nbcloud home (~/.local/share/nbcloud, or NBCLOUD_HOME
    # as the tests set it), the user's own, not /var/lib
    pool = session_cloud.paths["nbcloud"]
    assert str(pool).startswith(str(config.home())) and not str(pool).startswith("/var/")
    assert pool.stat().st_uid == os.getuid()


def test_instance_on_user_networking(session_cloud):
    c = session_cloud
    inst = c.instances.create("ss-web", image="tiny", flavor="t.nano")
    try:
        meta = inst.meta
        assert meta["networks"] == "user"
        assert inst.ip == "127.0.0.1" and inst.ssh_port != 22
        # the forwarded port is QEMU's, on loopback only
        with socket.create_connection(("127.0.0.1", inst.ssh_port), timeout=5) as s:
            assert s.recv(8).startswith(b"SSH-")
        out = inst.ssh("ip -4 -o addr show eth0; hostname; id -u")
        assert "10.0.2.15/24" in out and "ss-web" in out
        assert out.split()[-1] == "0"
        # a data volume in the user's pool, attached live
        vol = c.volumes.create("ss-data", "64M")
        c.volumes.attach("ss-data", "ss-web")
        # 64 MiB = 131072 sectors of 512 bytes; the hot-plugged disk shows up shortly
        wait_for(lambda: "131072" in inst.ssh("cat /sys/block/vd*/size").split(), 60,
                 "the attached volume to appear in the guest")
        assert vol.path.startswith(str(config.home()))
    finally:
        c.instances.delete("ss-web", volumes=True)
    assert "ss-web" not in c.provider.managed()
    assert not [v for v in c.provider.all_volumes() if v.name.startswith("ss-")]
    assert not [r for r in c.inventory.resources(c.uri) if r.name.startswith("ss-")]


def test_system_networks_are_refused_with_a_reason(session_cloud):
    with pytest.raises((CloudError, InvalidSpec)) as err:
        session_cloud.instances.create("ss-bad", image="tiny", network=["user", "lab"])
    assert "user" in str(err.value)
    assert "ss-bad" not in session_cloud.provider.managed()
