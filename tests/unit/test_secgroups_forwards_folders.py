"""Security groups, port forwards and synced folders without a daemon: validation, what
they compile to (nwfilter XML, nft JSON, domain XML, user-data), and the test driver."""
from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import pytest

from nbcloud.core.errors import CloudError, InvalidSpec, NotFound
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.compute import shared_dirs as spec_shares
from nbcloud.providers.libvirt.firewall import (
    compile_group,
    compile_instance,
    group_filter,
    instance_filter,
)
from nbcloud.providers.libvirt.forwards import add_commands, rule_exprs, table_commands
from nbcloud.providers.libvirt.nwfilters import (
    FilterDef,
    FilterRule,
    nwfilter_xml,
    parse_nwfilter,
    with_filterref,
)
from nbcloud.services.floating import Forward, check_port
from nbcloud.services.folders import parse_sync, parse_syncs, user_data
from nbcloud.services.secgroups import Rule, make_rule, parse_ports
from nbcloud.ui import commands
from nbcloud.ui.commands import CommandError


# ----- security groups ------------------------------------------------------------------
@pytest.mark.parametrize("port, want", [("22", (22, 22)), ("8000-8080", (8000, 8080)),
                                        (443, (443, 443)), (None, None), ("1-65535",
                                                                          (1, 65535))])
def test_ports_accepted(port, want):
    assert parse_ports(port) == want


@pytest.mark.parametrize("port", ["70000", "0", "-1", "80-22", "a", "22-", "1-65536",
                                  "22-23-24"])
def test_ports_refused_in_one_line(port):
    with pytest.raises(InvalidSpec, match="1-65535") as caught:
        parse_ports(port)
    assert "\n" not in str(caught.value)


def test_rule_validation():
    with pytest.raises(InvalidSpec, match="tcp, udp, icmp, all"):
        make_rule(1, proto="gre")
    with pytest.raises(InvalidSpec, match="tcp and udp only"):
        make_rule(1, proto="icmp", port="22")
    with pytest.raises(InvalidSpec, match="not both"):
        make_rule(1, source="10.0.0.0/8", source_group="web")
    with pytest.raises(InvalidSpec, match="IPv4"):
        make_rule(1, source="10.0.0.0/33")
    with pytest.raises(InvalidSpec, match="source group"):
        make_rule(1, source_group="Bad Name")
    r = make_rule(4, proto="udp", port="53", source="10.1.2.3", egress=True)
    assert (r.direction, r.ports, r.cidr) == ("egress", (53, 53), "10.1.2.3/32")
    assert Rule.from_json(r.to_json()) == r
    assert r.describe() == "egress udp port 53 to 10.1.2.3/32"


def test_group_compiles_cidr_and_group_sources():
    rules = [make_rule(1, port="22"), make_rule(2, port="80-81", source_group="web"),
             make_rule(3, proto="icmp", source="10.9.0.0/16")]
    members = {"web": {"w1": ["10.77.0.5"], "w2": ["10.77.0.6", "10.80.0.6"]}}
    f = compile_group("app", rules, members, "0wn3r")
    assert f.name == group_filter("0wn3r", "app") == "nbcloud-0wn3r-sg-app"
    got = [(r.direction, r.protocol, r.match) for r in f.rules]
    assert got[0] == ("in", "tcp", {"dstportstart": "22", "dstportend": "22"})
    assert {r[2]["srcipaddr"] for r in got[1:4]} == {"10.77.0.5", "10.77.0.6", "10.80.0.6"}
    assert all(r[2]["dstportstart"] == "80" and r[2]["srcipmask"] == "32"
               for r in got[1:4])
    assert got[4] == ("in", "icmp", {"srcipaddr": "10.9.0.0", "srcipmask": "16"})
    # a group with no members yet: the rule lets nobody in
    assert compile_group("app", rules[1:2], {"web": {}}, "0wn3r").rules == ()


def test_instance_filter_head_and_tail():
    f = compile_instance("web-1", ["a", "b"], False, ["10.77.0.1"], "0wn3r")
    assert f.name == instance_filter("0wn3r", "web-1") == "nbcloud-0wn3r-inst-web-1"
    # libvirt's anti-spoofing first, then the groups
    assert f.refs == (lx.BASE_FILTER, group_filter("0wn3r", "a"), group_filter("0wn3r", "b"))
    first = f.rules[0]
    assert (first.action, first.direction, first.match) == ("accept", "in",
                                                            {"state": "ESTABLISHED,RELATED"})
    # DNS replies come in as ESTABLISHED: no "source port 53" hole
    assert not [r for r in f.rules if r.direction == "in" and "srcportstart" in r.match
                and r.match["srcportstart"] != "67"]
    drops = [r for r in f.rules if r.action == "drop"]
    assert [(r.direction, r.priority) for r in drops] == [("in", 1000)]
    assert any(r.direction == "out" and r.protocol == "all" and r.action == "accept"
               and not r.match for r in f.rules)
    limited = compile_instance("web-1", ["a"], True, ["10.77.0.1", "10.80.0.1"], "0wn3r")
    assert ("drop", "out") in {(r.action, r.direction) for r in limited.rules}
    # DNS goes out to the networks' own resolvers, never to any address
    dns = [(r.protocol, r.match) for r in limited.rules if r.match.get("dstportstart") == "53"]
    assert sorted(dns, key=str) == sorted(
        [(p, {"dstipaddr": ip, "dstportstart": "53"}) for p in ("udp", "tcp")
         for ip in ("10.77.0.1", "10.80.0.1")], key=str)


def test_nwfilter_xml_round_trip_and_filterref():
    f = FilterDef("nbcloud-sg-x", (FilterRule("accept", "in", "tcp",
                                              {"dstportstart": "22"}, 500),),
                  ("nbcloud-sg-y",), "6a1e2b7c-0000-4000-8000-000000000001")
    root = ET.fromstring(nwfilter_xml(f))
    assert root.get("chain") == "root" and root.find("filterref").get("filter") == \
        "nbcloud-sg-y"
    assert parse_nwfilter(nwfilter_xml(f)) == f
    iface = ET.fromstring("<interface type='network'><mac address='52:54:00:00:00:01'/>"
                          "<filterref filter='old'/></interface>")
    assert with_filterref(iface, "new").find("filterref").get("filter") == "new"
    ref = with_filterref(iface, "clean-traffic", "10.77.0.5").find("filterref")
    assert [(p.get("name"), p.get("value")) for p in ref] == [("IP", "10.77.0.5")]
    assert with_filterref(iface, None).find("filterref") is None
    assert iface.find("filterref").get("filter") == "old"  # the original is untouched


def test_secgroup_grammar():
    a = commands.parse(["secgroup", "rule", "add", "g", "--proto", "udp", "--port",
                        "53", "--source-group", "h", "--egress"])
    assert (a.verb, a.rule_verb, a.proto, a.port, a.source_group, a.egress) == \
        ("rule", "add", "udp", "53", "h", True)
    with pytest.raises(CommandError, match="not allowed with"):
        commands.parse(["secgroup", "rule", "add", "g", "--source", "10.0.0.0/8",
                        "--source-group", "h"])
    with pytest.raises(CommandError):
        commands.parse(["secgroup", "rule", "add", "g", "--proto", "gre"])
    assert commands.parse(["secgroup", "rule", "delete", "g", "3"]).rule_id == 3


def test_secgroup_on_test_driver_leaves_nothing(test_cloud):
    # libvirt's test driver has no nwfilter driver: refused in one line, nothing recorded
    with pytest.raises(CloudError, match="network filter"):
        test_cloud.secgroups.create("sg-unit")
    assert test_cloud.secgroups.list() == []
    with pytest.raises(NotFound):
        test_cloud.secgroups.add_rule("sg-unit", port="22")
    with pytest.raises(InvalidSpec):
        test_cloud.secgroups.create("Bad_Name")


# ----- port forwards ----------------------------------------------------------------------
def test_forward_rules_as_nft_json():
    f = Forward("web-2222", "web", 22, 2222, "127.0.0.1", "10.77.0.5")
    pre = rule_exprs(f, "prerouting")
    assert pre[0]["match"]["right"] == "127.0.0.1"
    assert pre[-1] == {"dnat": {"addr": "10.77.0.5", "port": 22}}
    post = rule_exprs(f, "postrouting")
    assert post[-1] == {"masquerade": None}
    anyaddr = rule_exprs(Forward("w", "web", 22, 2000, "", "10.77.0.5"), "output")
    assert anyaddr[0]["match"]["left"] == {"fib": {"result": "type", "flags": ["daddr"]}}
    cmds = add_commands(f)
    assert [c["add"]["rule"]["chain"] for c in cmds] == ["prerouting", "output",
                                                         "postrouting"]
    assert all(c["add"]["rule"]["comment"] == "nbcloud:web-2222" for c in cmds)
    chains = [c["add"]["chain"] for c in table_commands() if "chain" in c.get("add", {})]
    assert {(c["name"], c["type"]) for c in chains} == {("prerouting", "nat"),
                                                         ("output", "nat"),
                                                         ("postrouting", "nat"),
                                                         ("guard", "filter")}


def test_forward_validation(test_cloud):
    assert check_port("22") == 22
    for bad in ("70000", "0", "x", True):
        with pytest.raises(InvalidSpec, match="1 to 65535"):
            check_port(bad)
    with pytest.raises(InvalidSpec, match="not an address of this host"):
        test_cloud.floating.create("nope", 22, host_address="192.0.2.1")
    with pytest.raises(InvalidSpec, match="IPv4"):
        test_cloud.floating.create("nope", 22, host_address="localhost")
    with pytest.raises(NotFound):
        test_cloud.floating.create("nope", 22, host_port=2222)
    assert test_cloud.floating.list() == []


# ----- synced folders and the provisioner -------------------------------------------------
def test_sync_paths(tmp_path):
    f = parse_sync(f"{tmp_path}:/srv/data", 1)
    assert (f.host_dir, f.guest_dir, f.tag) == (str(tmp_path), "/srv/data", "nbsync1")
    for bad, match in ((f"{tmp_path}/../x:/srv", "'..'"), (f"{tmp_path}:/srv/../etc", "'..'"),
                       (f"{tmp_path}/none:/srv", "does not exist"),
                       (f"{tmp_path}:srv", "absolute"), (f"{tmp_path}:/", "guest's own"),
                       (f"{tmp_path}:/root/.ssh", "guest's own"),
                       (f"{tmp_path}:/srv/a b", "absolute"), ("/srv", "HOSTDIR:GUESTDIR")):
        with pytest.raises(InvalidSpec, match=re.escape(match)) as caught:
            parse_sync(bad)
        assert "\n" not in str(caught.value)
    with pytest.raises(InvalidSpec, match="same guest folder"):
        parse_syncs([f"{tmp_path}:/srv", f"{tmp_path}:/srv/"])


def test_user_data_mounts_then_theirs_then_provisioner(tmp_path):
    folders = parse_syncs([f"{tmp_path}:/mnt/host"])
    theirs = "#!/bin/sh\necho theirs\n"
    script = "echo 'quotes \" and $dollars' ; exit 0\n"
    text = user_data(folders, script, theirs)
    assert text.startswith("#!/bin/sh\n")
    mount = text.index("mount -t virtiofs nbsync0 /mnt/host")
    blobs = re.findall(r"<<'NBCLOUD_B64'\n(.*?)\nNBCLOUD_B64", text, re.DOTALL)
    decoded = [base64.b64decode("".join(b.split())).decode() for b in blobs]
    assert decoded == [theirs, script]
    assert mount < text.index(blobs[0]) < text.index(blobs[1])
    assert "nbcloud-provision-done rc=$rc" in text
    assert user_data((), None, theirs) == theirs
    with pytest.raises(InvalidSpec, match="'#!' script"):
        user_data(folders, None, "#cloud-config\nruncmd: [ls]\n")
    with pytest.raises(InvalidSpec, match="empty"):
        user_data((), "  \n", None)


def test_domain_with_shares_on_test_driver(test_cloud, tmp_path, unique):
    name = unique("sgfs")
    d = lx.DomainDef(name=name, vcpus=1, memory=128 << 20, domain_type="test",
                     shares=spec_shares(((str(tmp_path), "/mnt/host"),)),
                     metadata={"kind": "instance"})
    root = ET.fromstring(lx.domain_xml(d))
    assert root.find("memoryBacking/access").get("mode") == "shared"
    assert root.find("memoryBacking/source").get("type") == "memfd"
    fs = root.find("devices/filesystem")
    assert (fs.find("driver").get("type"), fs.find("source").get("dir"),
            fs.find("target").get("dir")) == ("virtiofs", str(tmp_path), "nbsync0")
    assert ET.fromstring(lx.domain_xml(lx.DomainDef(name=name, vcpus=1, memory=1 << 27))
                         ).find("memoryBacking") is None
    test_cloud.provider.define(d)
    try:
        live = ET.fromstring(test_cloud.provider.domain_xml_desc(name))
        assert live.find("devices/filesystem/source").get("dir") == str(tmp_path)
    finally:
        test_cloud.provider.delete(name)


def test_instance_grammar_for_sync_and_provision():
    a = commands.parse(["instance", "create", "x", "--sync", "/a:/b", "--sync", "/c:/d",
                        "--provision", "$p"])
    assert (a.sync, a.provision) == (["/a:/b", "/c:/d"], "$p")
    p = commands.parse(["instance", "provision", "x", "setup.sh"])
    assert (p.script, p.log) == ("setup.sh", False)
    assert commands.parse(["floating", "create", "x", "--port", "22", "--host-port",
                           "2222"]).host_port == "2222"


# ----- the secgroup: section of a stack ---------------------------------------------------
SG_BODY = """
secgroup:
  web: {rules: ["tcp 22", "tcp 80 from 10.0.0.0/8"]}
  db: {rules: ["tcp 5432 from web", "out udp 53 to 10.77.0.1"]}
instance:
  app: {count: 2, secgroup: [web]}
  pg: {secgroup: [db, web]}
"""


def test_stack_secgroup_section_parses_and_plans():
    from nbcloud.core.stackfile import parse as parse_stack
    from nbcloud.plan.compare import LiveState, compute, sg_members
    stack = parse_stack(SG_BODY, {}, "s")
    assert stack.secgroups["db"].rules == ("tcp 5432 from web", "out udp 53 to 10.77.0.1")
    assert stack.instances["pg"].secgroups == ("db", "web")
    assert sg_members(stack, "web") == ["app-1", "app-2", "pg"]
    plan = compute(stack, [], LiveState())
    ops = [(a.op, a.kind, a.name) for a in plan.actions]
    # groups before the instances that are their members
    assert ops.index(("create", "secgroup", "db")) < ops.index(("create", "instance", "pg"))
    assert "+ create   secgroup web  (2 rules: tcp 22; tcp 80 from 10.0.0.0/8)" in str(plan)


def test_stack_secgroup_converged_and_changed():
    from nbcloud.core.stackfile import parse as parse_stack
    from nbcloud.inventory import Resource
    from nbcloud.plan.compare import LiveState, compute
    body = "secgroup:\n  web: {rules: ['tcp 22']}\n"
    rec = [Resource("u", "secgroup", "web", "s", {}, None, "active")]
    have = {"rules": [make_rule(1, port="22").to_json()], "instances": ["other"]}
    plan = compute(parse_stack(body, {}, "s"), rec, LiveState(secgroups={"web": have}))
    assert plan.actions == []  # members from outside the stack are not the stack's
    plan = compute(parse_stack(body.replace("22", "22-23"), {}, "s"), rec,
                   LiveState(secgroups={"web": have}))
    assert [(a.op, a.changes) for a in plan.actions] == \
        [("update", ("rules [tcp 22] -> [tcp 22-23]",))]
    plan = compute(parse_stack("", {}, "s"), rec, LiveState(secgroups={"web": have}))
    assert [(a.op, a.kind) for a in plan.actions] == [("delete", "secgroup")]


@pytest.mark.parametrize("body, match", [
    ("secgroup:\n  web: {rules: ['tcp 70000']}\n", "1-65535"),
    ("secgroup:\n  web: {rules: ['gre']}\n", "tcp, udp, icmp, all"),
    ("secgroup:\n  web: {rules: ['tcp 22 to 10.0.0.0/8']}\n", "'from'"),
    ("secgroup:\n  web: {rules: [{proto: tcp}]}\n", "holds {'proto'"),
    ("secgroup:\n  web: {rules: 'tcp 22'}\n", "list"),
    ("instance:\n  a: {secgroup: [nope]}\n", "not in the secgroup: section"),
])
def test_stack_secgroup_mistakes_are_one_line(body, match):
    from nbcloud.core.stackfile import parse as parse_stack
    with pytest.raises(InvalidSpec, match=re.escape(match)) as caught:
        parse_stack(body, {}, "s")
    assert "\n" not in str(caught.value)


def test_every_nic_on_a_libvirt_network_carries_anti_spoofing():
    """A NIC with its reserved address references libvirt's clean-traffic with that
    address as parameter IP (the integration tier checks real instances)."""
    d = lx.DomainDef(name="asp", vcpus=1, memory=1 << 27, nics=(
        lx.Nic("nbcloud", "52:54:00:00:00:01", ip="10.77.0.5"),
        lx.Nic("lab", "52:54:00:00:00:02", ip="10.80.0.9")))
    refs = [i.find("filterref") for i in ET.fromstring(lx.domain_xml(d))
            .findall("devices/interface")]
    assert [(r.get("filter"), [(p.get("name"), p.get("value")) for p in r])
            for r in refs] == [(lx.BASE_FILTER, [("IP", "10.77.0.5")]),
                               (lx.BASE_FILTER, [("IP", "10.80.0.9")])]
