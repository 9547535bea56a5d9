"""Fault: the libvirt DAEMON is SIGKILLed between an operation's intent and its outcome,
mid-create and mid-delete; after it restarts, recovery leaves nothing behind (rollback) or
finishes the operation (resume).

The daemon killed is a private one (private_daemon.py: its own network and mount
namespaces), not the shared daemon the other tests use. The kill is placed exactly, by
wrapping one backend call so that it first kills the daemon and then makes its real call:
the operation then fails on a dead connection, its own undo fails too, and it is recorded
'interrupted' for `recover`. Guests are not reachable from here (another namespace), so
instances are created without waiting for SSH.
"""
from __future__ import annotations

import pytest
from tests.reliability.private_daemon import PrivateDaemon

from nbcloud.api import Cloud
from nbcloud.core.errors import CloudError
from nbcloud.inventory import Inventory
from nbcloud.providers.libvirt.volumes import INSTANCE_POOL

TCG = {"accelerator": "tcg", "reason": "KVM does not work on this machine"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A private libvirtd with nbcloud's pools (the tiny image copied in) and network."""
    d = PrivateDaemon(tmp_path_factory.mktemp("st-privd"))
    d.prepare()
    d.start()
    d.with_nbcloud_pools()
    yield d
    d.wipe()
    d.stop()
    d.release_netns()


def _cloud(daemon: PrivateDaemon, path) -> Cloud:
    c = Cloud(daemon.uri, inventory=Inventory(path))
    c._accel = TCG  # no probe boot: KVM is not usable here, and it would cost a boot
    c.paths["logs"].mkdir(parents=True, exist_ok=True)  # not made for a qemu+unix URI
    c.ensure_default_network()
    return c


def _leftovers(c: Cloud, name: str) -> list[str]:
    out = ["domain"] if c.provider.exists(name) else []
    vols = {v.name() for v in c.provider.pool(INSTANCE_POOL).listAllVolumes(0)}
    out += sorted(v for v in vols if v.startswith(f"{name}."))
    out += [f"mac {r.mac}" for r, _live in c.provider.host_reservations("nbcloud", name)]
    out += [f"row {r.name}" for r in c.inventory.resources(c.uri, "instance") if r.name == name]
    return out


def _crash_before(c: Cloud, daemon: PrivateDaemon, method: str) -> None:
    """Make `c.provider.METHOD` SIGKILL the daemon, then make its real call."""
    real = getattr(c.provider, method)

    def crash_then_call(*args, **kwargs):
        daemon.kill()
        return real(*args, **kwargs)
    setattr(c.provider, method, crash_then_call)


def _op(c: Cloud, verb: str, name: str) -> dict:
    (op,) = [o for o in c.inventory.operations() if (o["verb"], o["name"]) == (verb, name)]
    return op


def test_daemon_killed_mid_create_then_rolled_back(daemon, tmp_path, recorder):
    name, path = "st-dk-a", tmp_path / "inv.sqlite"
    recorder.fault("libvirtd SIGKILLed mid-create (domain defined), rolled back")
    c = _cloud(daemon, path)
    _crash_before(c, daemon, "start")   # defined, seed and overlay made, not started
    with pytest.raises(CloudError, match="libvirt"):
        c.instances.create(name, image="tiny", flavor="t.nano", wait=False)
    op = _op(c, "create", name)
    assert op["result"] == "interrupted" and "the rollback failed too" in op["detail"]
    c.close()

    daemon.start()
    again = _cloud(daemon, path)
    try:
        left = _leftovers(again, name)
        assert left[0] == "domain" and f"{name}.seed.iso" in left and \
            any(x.startswith("mac ") for x in left), left
        assert again.provider.state(name) == "stopped"
        done = again.recover(op["id"], "rollback")
        assert done[0] == f"domain {name}"
        assert _leftovers(again, name) == []
        assert again.inventory.operation_by_id(op["id"])["result"] == "rolled back"
    finally:
        again.close()


def test_daemon_killed_mid_create_and_mid_delete_then_resumed(daemon, tmp_path, recorder):
    name, path = "st-dk-b", tmp_path / "inv.sqlite"
    recorder.fault("libvirtd SIGKILLed mid-create (QEMU running), resumed")
    recorder.fault("libvirtd SIGKILLed mid-delete (domain undefined), resumed")
    c = _cloud(daemon, path)
    # killed once QEMU runs, before dnsmasq is told the address: QEMU outlives libvirtd
    _crash_before(c, daemon, "publish")
    with pytest.raises(CloudError):
        c.instances.create(name, image="tiny", flavor="t.nano", wait=False)
    op = _op(c, "create", name)
    assert op["result"] == "interrupted"
    c.close()

    daemon.start()
    again = _cloud(daemon, path)
    try:
        assert again.provider.state(name) == "running"  # the restarted daemon found QEMU
        assert [live for _r, live in again.provider.host_reservations("nbcloud", name)] \
            == [False]
        done = again.recover(op["id"], "resume")
        assert done[0].startswith("published 10.77.0.") and \
            done[-1] == f"inventory row instance {name} (running)"
        row = next(r for r in again.inventory.resources(again.uri, "instance")
                   if r.name == name)
        assert (row.state, row.spec["flavor"], row.uuid) == \
            ("running", "t.nano", again.provider.uuid(name))
        assert [live for _r, live in again.provider.host_reservations("nbcloud", name)] \
            == [True]

        # now a delete, killed after the domain is undefined, before its disks go
        _crash_before(again, daemon, "delete_volume")
        with pytest.raises(CloudError, match="stopped answering"):
            again.instances.delete(name)
        dop = _op(again, "delete", name)
        assert dop["result"] == "interrupted"
        again.close()
        daemon.start()
        again = _cloud(daemon, path)
        assert not again.provider.exists(name)
        assert f"{name}.root.qcow2" in _leftovers(again, name)
        with pytest.raises(CloudError, match="cannot be rolled back"):
            again.recover(dop["id"], "rollback")
        again.recover(dop["id"], "resume")
        assert _leftovers(again, name) == []
        assert again.inventory.operation_by_id(dop["id"])["result"] == "resumed"
    finally:
        again.close()
