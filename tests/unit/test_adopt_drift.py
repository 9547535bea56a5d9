"""Adoption of objects made outside nbcloud, and NIC drift, on test:///default (and NIC
drift computed without a daemon)."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.spec import InvalidSpec
from nbcloud.core.stackfile import parse
from nbcloud.inventory import Resource
from nbcloud.plan.compare import LiveState, compute, drift, nic_drift
from nbcloud.workflows.adopt import flavor_for

M = 1 << 20
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"


def _plain_domain(conn, name: str, network: str = "default", mac: str = MAC1) -> None:
    """A domain as `virsh define` would make it: no nbcloud mark."""
    conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>128</memory>"
        "<vcpu>1</vcpu><os><type>hvm</type></os><devices>"
        f"<interface type='network'><mac address='{mac}'/><source network='{network}'/>"
        "</interface></devices></domain>")


def _live_entry(nics, nets="lab", macs=MAC1):
    return {"meta": {"kind": "instance", "stack": "s", "flavor": "t.nano", "image": "tiny",
                     "networks": nets, "mac": macs, "volumes": ""},
            "vcpus": 1, "memory": 128 * M, "running": True, "nics": nics}


def test_nic_drift_phrases():
    assert nic_drift(_live_entry([("lab", MAC1)])) == ""
    assert nic_drift(_live_entry([("lab", MAC1), ("lab", MAC2)])) == \
        f"NIC {MAC2} on lab added"
    assert nic_drift(_live_entry([])) == f"NIC {MAC1} on lab removed"
    assert nic_drift(_live_entry([("other", MAC1)])) == f"NIC {MAC1} moved from lab to other"
    # user-mode networking is no libvirt interface: never drift
    assert nic_drift(_live_entry([("lab", MAC1)], "lab,user", f"{MAC1},{MAC2}")) == ""


def test_nic_drift_is_an_update_in_the_plan_and_in_drift():
    body = "instance:\n  web: {flavor: t.nano, network: [lab]}\n"
    live = LiveState(domains={"web": _live_entry([("lab", MAC1), ("lab", MAC2)])},
                     networks={"lab": {"cidr": "10.80.0.0/24", "mode": "nat",
                                       "managed": True}})
    rec = [Resource("u", "instance", "web", "s", {}, None, "running")]
    plan = compute(parse(body, {}, "s"), rec, live)
    assert [(a.op, a.name, a.changes) for a in plan.actions] == [
        ("update", "web", (f"NICs changed behind nbcloud's back: NIC {MAC2} on lab added",))]
    assert plan.drift == [f"instance web NICs changed behind nbcloud's back: NIC {MAC2} "
                          "on lab added"]
    assert ("instance", "web", "s", f"NICs changed behind nbcloud's back: NIC {MAC2} on "
            "lab added") in drift(rec, live)


def test_flavor_for_an_adopted_size():
    assert flavor_for(1, 128 * M) == "c.nano"
    assert flavor_for(2, 1024 * M) == "custom-2c-1024m"


def test_adopt_instance_then_plan_and_destroy_manage_it(test_cloud, unique):
    name = unique("st-ad")
    conn = test_cloud.provider.conn
    _plain_domain(conn, name)
    assert ("instance", name, "-", "unmanaged (no nbcloud mark): never touched") in \
        test_cloud.stacks.drift().rows or \
        ["instance", name, "-", "unmanaged (no nbcloud mark): never touched"] in \
        test_cloud.stacks.drift().rows
    body = f"instance:\n  {name}: {{image: tiny, flavor: c.nano, network: [default]}}\n"
    with pytest.raises(InvalidSpec, match="without nbcloud's mark"):
        test_cloud.stacks.plan("st-ad", body)   # refused before adoption

    done = test_cloud.adopt(name, "instance", "st-ad")
    assert done == f"adopted instance {name} into stack st-ad as c.nano on default"
    meta = test_cloud.provider.metadata(name)
    assert (meta["adopted"], meta["networks"], meta["mac"], meta["stack"]) == \
        ("1", "default", MAC1, "st-ad")
    row = next(r for r in test_cloud.inventory.resources(test_cloud.uri, "instance")
               if r.name == name)
    assert (row.stack, row.spec["flavor"], row.state) == ("st-ad", "c.nano", "stopped")
    assert not [r for r in test_cloud.stacks.drift().rows if r[1] == name]
    assert [r[1] for r in test_cloud.stacks.show("st-ad").rows] == [name]
    assert test_cloud.stacks.plan("st-ad", body).actions == []   # managed as it is
    with pytest.raises(AlreadyExists):
        test_cloud.adopt(name)
    plan = test_cloud.stacks.destroy("st-ad")
    assert [(a.op, a.name) for a in plan.actions] == [("delete", name)]
    assert not test_cloud.provider.exists(name)


def test_adopt_network_and_refusals(test_cloud, unique):
    # the test driver's own network `default` is not nbcloud's until adopted
    with pytest.raises(CloudError, match="not made by nbcloud"):
        test_cloud.networks.delete("default")
    assert ["network", "default", "-", "unmanaged (not made by nbcloud): never touched"] \
        in test_cloud.stacks.drift().rows
    assert test_cloud.adopt("default", "network", "st-n").startswith(
        "adopted network default (192.168.122.0/24 nat)")
    assert not [r for r in test_cloud.stacks.drift().rows if r[1] == "default"]
    row = next(r for r in test_cloud.inventory.resources(test_cloud.uri, "network"))
    assert (row.stack, row.spec["adopted"]) == ("st-n", True)
    test_cloud.inventory.remove(test_cloud.uri, "network", "default")   # leave it be
    with pytest.raises(NotFound):
        test_cloud.adopt(unique("st-none"))
    with pytest.raises(InvalidSpec, match="kind 'pool'"):
        test_cloud.adopt("x", "pool")
    with pytest.raises(InvalidSpec):
        test_cloud.adopt("Bad_Name")
    with pytest.raises(CloudError, match="named .*ssd.qcow2"):
        test_cloud.adopt(unique("st-v"), "volume")


def test_adopt_magic_and_stack_show(ip):
    from nbcloud import _magics
    conn = _magics.api.provider.conn
    _plain_domain(conn, "st-magic-ad")
    msg = ip.run_line_magic("cloud", "adopt st-magic-ad --stack st-m")
    assert "adopted instance st-magic-ad into stack st-m" in str(msg)
    shown = ip.run_line_magic("cloud", "stack show st-m")
    assert shown.rows[0][:2] == ["instance", "st-magic-ad"]
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_line_magic("cloud", "adopt x --kind pool")
    ip.run_line_magic("cloud", "stack destroy st-m")
    assert not _magics.api.provider.exists("st-magic-ad")

# Reverting NIC drift needs device hot-plug, which the test driver does not have: it is
# tested on the real daemon (tests/integration/test_adopt_nics.py).


def test_an_adopted_instance_shows_without_a_host_key_and_refuses_ssh(test_cloud, unique):
    from nbcloud.core.errors import SSHError
    name = unique("st-ad")
    _plain_domain(test_cloud.provider.conn, name)
    test_cloud.adopt(name)
    inst = test_cloud.instances.get(name)
    assert "none pinned (adopted)" in inst._repr_html_()
    with pytest.raises(SSHError, match="was adopted"):
        inst.ssh("true")
    test_cloud.instances.delete(name)
    assert not test_cloud.provider.exists(name)
