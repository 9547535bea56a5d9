"""Settling interrupted operations on test:///default: for each verb that can be
interrupted, rollback undoes what it half-made and resume finishes it (interrupted.py).
The half-made states are made directly with the backend, as a dead process leaves them."""
from __future__ import annotations

import libvirt
import pytest

from nbcloud.core.errors import CloudError
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.networks import bridge_name


def _interrupted(cloud, verb: str, kind: str, name: str, **args) -> int:
    op = cloud.inventory.begin(cloud.uri, verb, kind, name, **args)
    assert cloud.inventory.resolve(op, "interrupted", "its process died")
    return op


def _row(cloud, kind: str, name: str):
    return next((r for r in cloud.inventory.resources(cloud.uri, kind) if r.name == name),
                None)


def _define_marked(cloud, name: str) -> None:
    meta = {"kind": "instance", "stack": "st-s", "image": "tiny", "flavor": "t.nano",
            "networks": "", "volumes": "", "ip": "", "key": "default"}
    d = lx.DomainDef(name=name, vcpus=1, memory=128 << 20, domain_type="test",
                     boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(), metadata=meta)
    cloud.provider.conn.defineXML(lx.domain_xml(d))


def _result(cloud, op: int) -> str:
    return cloud.inventory.operation_by_id(op)["result"]


@pytest.mark.parametrize("how", ["rollback", "resume"])
def test_interrupted_volume_create(test_cloud, unique, how):
    name = unique("st-v")
    pool = test_cloud.provider.ensure_tier_pool("ssd")
    test_cloud.provider.create_volume(pool, f"{name}.ssd.qcow2", 1 << 30, "qcow2")
    op = _interrupted(test_cloud, "create", "volume", name, size=1 << 30, tier="ssd",
                      pool=pool)
    done = test_cloud.recover(op, how)
    if how == "rollback":
        assert f"volume {name}.ssd.qcow2 in pool {pool}" in done
        assert name not in test_cloud.volumes.all() and _row(test_cloud, "volume", name) is None
    else:
        row = _row(test_cloud, "volume", name)
        assert (row.state, row.spec["tier"], row.spec["size"]) == ("available", "ssd", 1 << 30)
        test_cloud.volumes.delete(name)
    assert _result(test_cloud, op) == {"rollback": "rolled back", "resume": "resumed"}[how]


def test_interrupted_volume_create_that_made_nothing_is_made_on_resume(test_cloud, unique):
    name = unique("st-v")
    op = _interrupted(test_cloud, "create", "volume", name, size=2 << 30, tier="hdd",
                      pool="nbcloud-hdd")
    assert test_cloud.recover(op, "resume") == [f"created volume {name} again"]
    assert test_cloud.volumes.get(name).size == 2 << 30
    test_cloud.volumes.delete(name)


@pytest.mark.parametrize("how", ["rollback", "resume"])
def test_interrupted_network_create(test_cloud, unique, how):
    name = unique("st-n")
    bridge = bridge_name(name, test_cloud.provider.network_bridges())
    cidr = f"10.{90 + (how == 'resume')}.0.0/24"
    test_cloud.provider.create_network(name, cidr, "isolated", bridge)
    op = _interrupted(test_cloud, "create", "network", name, cidr=cidr, mode="isolated",
                      bridge=bridge, stack="st-s")
    done = test_cloud.recover(op, how)
    if how == "rollback":
        assert f"network {name}" in done
        assert name not in test_cloud.provider.network_names()
    else:
        row = _row(test_cloud, "network", name)
        assert (row.stack, row.spec["cidr"], row.spec["bridge"]) == ("st-s", cidr, bridge)
        assert test_cloud.provider.network_active(name)
        test_cloud.networks.delete(name)


def test_interrupted_network_delete_is_finished_on_resume(test_cloud, unique):
    name = unique("st-n")
    test_cloud.networks.create(name, "10.92.0.0/24", "isolated")
    op = _interrupted(test_cloud, "delete", "network", name)
    assert test_cloud.recover(op, "resume") == [f"network {name}",
                                                 f"inventory row network {name}"]
    assert name not in test_cloud.provider.network_names()


@pytest.mark.parametrize("how", ["rollback", "resume"])
def test_interrupted_instance_create_with_its_domain_defined(test_cloud, unique, how):
    name = unique("st-i")
    _define_marked(test_cloud, name)
    op = _interrupted(test_cloud, "create", "instance", name, image="tiny",
                      flavor="t.nano", networks=[], stack="st-s")
    done = test_cloud.recover(op, how)
    if how == "rollback":
        assert done[0] == f"domain {name}" and not test_cloud.provider.exists(name)
        assert _row(test_cloud, "instance", name) is None
    else:
        assert f"started domain {name}" in done
        assert test_cloud.provider.state(name) == "running"
        row = _row(test_cloud, "instance", name)
        assert (row.state, row.stack, row.spec["flavor"]) == ("running", "st-s", "t.nano")
        test_cloud.provider.delete(name)


def test_interrupted_instance_delete(test_cloud, unique):
    name = unique("st-i")
    _define_marked(test_cloud, name)
    op = _interrupted(test_cloud, "delete", "instance", name)
    # the domain is still there: rollback keeps it and records it again
    assert test_cloud.recover(op, "rollback")[0] == f"kept domain {name}"
    assert _row(test_cloud, "instance", name).state == "stopped"
    op = _interrupted(test_cloud, "delete", "instance", name)
    assert test_cloud.recover(op, "resume")[:2] == [f"domain {name}",
                                                   f"inventory row instance {name}"]
    assert not test_cloud.provider.exists(name)
    # and once the domain is undefined there is nothing to roll back to
    test_cloud.inventory.put(test_cloud.uri, "instance", name, state="running")
    op = _interrupted(test_cloud, "delete", "instance", name)
    with pytest.raises(CloudError, match="cannot be rolled back.*resume it"):
        test_cloud.recover(op, "rollback")
    assert _result(test_cloud, op) == "interrupted"
    test_cloud.recover(op, "resume")
    assert _row(test_cloud, "instance", name) is None


def test_a_domain_without_the_mark_is_never_touched(test_cloud, unique):
    name = unique("st-f")
    conn = test_cloud.provider.conn
    conn.defineXML(f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                   "<os><type>hvm</type></os></domain>")
    try:
        op = _interrupted(test_cloud, "create", "instance", name, networks=[])
        with pytest.raises(CloudError, match="not made by nbcloud"):
            test_cloud.recover(op, "rollback")
        assert test_cloud.provider.exists(name)
    finally:
        conn.lookupByName(name).undefine()


def test_bad_ways_and_verbs_are_one_line(test_cloud, unique):
    op = _interrupted(test_cloud, "resize", "instance", unique("st-i"))
    with pytest.raises(CloudError, match="'retry' is not a way.*'rollback'.*'resume'"):
        test_cloud.recover(op, "retry")
    with pytest.raises(CloudError, match="resize instance cannot be settled.*create instance"):
        test_cloud.recover(op, "resume")
    done = test_cloud.inventory.begin(test_cloud.uri, "create", "volume", "x")
    test_cloud.inventory.finish(done, "ok")
    with pytest.raises(CloudError, match="is 'ok', not interrupted"):
        test_cloud.recover(done, "resume")


def test_recover_resume_magic(ip):
    from nbcloud import _magics
    cloud = _magics.api
    name = "st-magic-vm"
    _define_marked(cloud, name)
    op = _interrupted(cloud, "create", "instance", name, networks=[], stack="adhoc")
    report = ip.run_line_magic("cloud", "doctor")
    assert "--resume" in str(report)
    msg = ip.run_line_magic("cloud", f"recover {op} --resume")
    assert str(msg).startswith(f"operation {op} resumed: started domain {name}")
    assert cloud.provider.state(name) == "running"
    op2 = _interrupted(cloud, "delete", "instance", name)
    msg = ip.run_line_magic("cloud", f"recover {op2} --resume")
    assert f"domain {name}" in str(msg) and not cloud.provider.exists(name)
    with pytest.raises(Exception, match="not allowed with"):
        ip.run_line_magic("cloud", f"recover {op2} --resume --rollback")
    assert libvirt  # the test driver is libvirt's own


def test_recovered_objects_no_stack_declares_are_shown_in_adhoc(test_cloud, unique):
    """A rebuilt inventory puts networks and volumes in `adhoc` (libvirt keeps no stack
    on them); `stack show adhoc` lists them, marked recovered, and `stack list` counts
    them."""
    from nbcloud.workflows.rebuild import rebuild
    net, vol = unique("st-rn"), unique("st-rv")
    test_cloud.networks.create(net, "10.94.0.0/24", "isolated", stack="gone")
    test_cloud.volumes.create(vol, "1G", stack="gone")
    for kind, name in (("network", net), ("volume", vol)):
        test_cloud.inventory.remove(test_cloud.uri, kind, name)
    rebuild(test_cloud.services)
    shown = {(row[0], row[1]): row for row in test_cloud.stacks.show("adhoc").rows}
    assert "recovered=True" in shown[("network", net)][3]
    assert shown[("volume", vol)][2] == "available" and \
        "recovered=True" in shown[("volume", vol)][3]
    assert dict(map(tuple, test_cloud.stacks.list().rows))["adhoc"] == str(len(
        [r for r in test_cloud.inventory.resources(test_cloud.uri) if r.stack == "adhoc"]))
    test_cloud.volumes.delete(vol)
    test_cloud.networks.delete(net)
