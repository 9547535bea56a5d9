"""`%cloud export ansible|yaml` on test:///default: groups per stack, key paths and never
key material; stacks back as `%%cloud apply` cells."""
from __future__ import annotations

import re

import libvirt
import pytest

from nbcloud.providers.libvirt import xml as lx
from nbcloud.services import keys
from nbcloud.ui.commands import parse, run
from nbcloud.workflows.export import ansible, ansible_group, cells


HOST_KEYS = {}


@pytest.fixture
def marked_instances(test_cloud, unique, tmp_path, monkeypatch):
    """Two running nbcloud-marked domains of stack `ex-lab` (one with an imported key
    without its private file), one of `adhoc` with its SSH on a forwarded loopback port,
    and a stopped one, recorded in the inventory; keys under tmp_path."""
    monkeypatch.setenv("NBCLOUD_HOME", str(tmp_path / "home"))
    conn = libvirt.open("test:///default")
    made = []
    for stack, key, ip, port, running in (
            ("ex-lab", "default", "10.80.0.5", None, True),
            ("ex-lab", "theirs", "10.80.0.6", None, True),
            ("adhoc", "default", "127.0.0.1", "2222", True),
            ("adhoc", "default", "10.1.0.10", None, False)):
        name = unique("rc-ex")
        HOST_KEYS[name] = keys.generate(f"{name}-host")[1]
        meta = {"kind": "instance", "stack": stack, "image": "tiny", "flavor": "t.nano",
                "networks": "lab", "ip": ip, "key": key, "hostkey": HOST_KEYS[name]}
        if port:
            meta["ssh_port"] = port
        dom = conn.defineXML(lx.domain_xml(lx.DomainDef(
            name=name, vcpus=1, memory=128 << 20, domain_type="test",
            boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(), metadata=meta)))
        if running:
            dom.create()
        test_cloud.inventory.put(test_cloud.uri, "instance", name,
                                 state="running" if running else "stopped", stack=stack)
        made.append(name)
    yield made
    for name in made:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    conn.close()


def test_ansible_inventory_groups_by_stack(test_cloud, marked_instances, tmp_path):
    web, theirs, loose, stopped = marked_instances
    default = keys.create_key("default")
    keys.import_key("theirs", default.public)
    text = str(ansible(test_cloud.services, tmp_path / "hosts.ini"))
    assert re.findall(r"^\[(.*)\]$", text, re.M) == ["all:vars", "adhoc", "ex_lab"]
    assert f"{web} ansible_host=10.80.0.5 ansible_user=root " \
           f"ansible_ssh_private_key_file={default.private_path}" in text
    assert f"{theirs} ansible_host=10.80.0.6 ansible_user=root\n" in text
    assert f"# {theirs}: key 'theirs' has no private file here" in text
    assert f"[adhoc]\n{loose} ansible_host=127.0.0.1 ansible_user=root ansible_port=2222 " \
           f"ansible_ssh_private_key_file={default.private_path}\n" in text
    assert "PRIVATE KEY" not in text and default.public.split()[1] not in text
    # a stopped instance is left out, and says so
    assert f"# {stopped} (stack adhoc) is stopped, not running: left out" in text
    assert f"\n{stopped} " not in text


def test_ansible_gets_the_pinned_host_keys_and_checks_them_strictly(
        test_cloud, marked_instances, tmp_path):
    web, theirs, loose, stopped = marked_instances
    keys.create_key("default")
    text = str(ansible(test_cloud.services, tmp_path / "hosts.ini"))
    known = tmp_path / "hosts.known_hosts"
    lines = known.read_text().splitlines()
    assert sorted(lines) == sorted([
        f"10.80.0.5 {' '.join(HOST_KEYS[web].split()[:2])}",
        f"10.80.0.6 {' '.join(HOST_KEYS[theirs].split()[:2])}",
        f"[127.0.0.1]:2222 {' '.join(HOST_KEYS[loose].split()[:2])}"])
    assert ("ansible_ssh_common_args='-o UserKnownHostsFile=" + str(known)
            + " -o StrictHostKeyChecking=yes'") in text
    assert "StrictHostKeyChecking=no" not in text


def test_a_hostile_host_key_in_metadata_never_reaches_known_hosts(
        test_cloud, marked_instances, tmp_path):
    web, *_ = marked_instances
    dom = libvirt.open("test:///default").lookupByName(web)
    meta = test_cloud.provider.metadata(web)
    test_cloud.provider.set_metadata(web, {**meta, "hostkey": "ssh-ed25519 AAAA\n* evil"})
    try:
        text = str(ansible(test_cloud.services, tmp_path / "hosts.ini"))
    finally:
        test_cloud.provider.set_metadata(web, meta)
    assert f"# {web} (stack ex-lab) has no pinned host key" in text
    assert "evil" not in (tmp_path / "hosts.known_hosts").read_text()
    assert dom.isActive()


def test_recorded_but_gone_is_a_comment(test_cloud, marked_instances, tmp_path):
    test_cloud.inventory.put(test_cloud.uri, "instance", "rc-gone", state="running",
                             stack="ex-lab")
    assert "# rc-gone (stack ex-lab) is recorded but not in libvirt" in \
        str(ansible(test_cloud.services, tmp_path / "hosts"))


def test_yaml_export_gives_the_cells_back(test_cloud, unique, tmp_path):
    net = unique("exn")
    body = f"network:\n  {net}: {{cidr: 10.94.0.0/24, mode: isolated}}\n"
    test_cloud.stacks.apply("ex-s", body)
    try:
        out = run(test_cloud, parse(["export", "yaml", "-o", str(tmp_path / "c.txt")]))
        assert str(out) == f"%%cloud apply --stack ex-s\n{body}"
        assert (tmp_path / "c.txt").read_text() == str(out)
        # the exported cell is a no-op against what it made
        assert test_cloud.stacks.plan("ex-s", str(out).split("\n", 1)[1]).actions == []
        assert "&lt;" not in out._repr_html_() and "<pre>" in out._repr_html_()
    finally:
        test_cloud.stacks.destroy("ex-s")
    assert str(cells(test_cloud.services)) == "# no stacks applied\n"


def test_group_names_are_identifiers():
    assert ansible_group("my-lab") == "my_lab"
