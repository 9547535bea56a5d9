"""Plans from desired vs recorded vs live, computed without a daemon (and the live read
on test:///default): order, create/update/replace/delete, drift, refusals, rendering."""
from __future__ import annotations

import pytest

from nbcloud.core.spec import InvalidSpec
from nbcloud.core.stackfile import parse
from nbcloud.inventory import Resource
from nbcloud.plan.compare import LiveState, compute, drift, user_data_digest
from nbcloud.workflows.stacks import read_live

M = 1 << 20
BODY = """
network:
  lab: {cidr: 10.80.0.0/24}
volume:
  data: {size: 1G}
instance:
  web: {flavor: t.nano, network: [lab], count: 2}
  db: {flavor: t.nano, network: [lab], volume: [data]}
"""


def _dom(flavor="t.nano", image="tiny", nets="lab", vols="", stack="s", memory=128 * M,
         vcpus=1):
    return {"meta": {"kind": "instance", "stack": stack, "flavor": flavor, "image": image,
                     "networks": nets, "volumes": vols},
            "vcpus": vcpus, "memory": memory, "running": True}


def _converged():
    """Recorded and live state that match BODY exactly."""
    live = LiveState(
        domains={"web-1": _dom(), "web-2": _dom(), "db": _dom(vols="data")},
        networks={"lab": {"cidr": "10.80.0.0/24", "mode": "nat", "managed": True}},
        volumes={"data": {"tier": "ssd", "size": 1 << 30, "pool": "nbcloud-ssd"}})
    rec = [Resource("u", "network", "lab", "s", {}, None, "active"),
           Resource("u", "volume", "data", "s", {}, None, "attached")]
    rec += [Resource("u", "instance", n, "s", {"user_data": user_data_digest(None)}, None,
                     "running") for n in ("web-1", "web-2", "db")]
    return rec, live


def _ops(plan):
    return [(a.op, a.kind, a.name) for a in plan.actions]


def test_empty_world_creates_in_dependency_order():
    plan = compute(parse(BODY, {}, "s"), [], LiveState())
    assert _ops(plan) == [("create", "network", "lab"), ("create", "volume", "data"),
                          ("create", "instance", "db"), ("create", "instance", "web-1"),
                          ("create", "instance", "web-2")]
    text = str(plan)
    assert text.splitlines()[0].startswith("plan for stack s: 5 to create")
    assert "  + create   network lab  (10.80.0.0/24 nat)" in text


def test_converged_stack_has_no_changes():
    rec, live = _converged()
    plan = compute(parse(BODY, {}, "s"), rec, live)
    assert plan.actions == [] and not plan and "no changes" in str(plan)


def test_flavor_is_update_image_and_network_are_replace():
    rec, live = _converged()
    body = BODY.replace("db: {flavor: t.nano", "db: {flavor: m.nano")
    body = body.replace("web: {flavor: t.nano", "web: {image: other, flavor: t.nano")
    plan = compute(parse(body, {}, "s"), rec, live)
    assert [(a.op, a.name, a.changes) for a in plan.actions] == [
        ("update", "db", ("flavor t.nano -> m.nano",)),
        ("replace", "web-1", ("image tiny -> other",)),
        ("replace", "web-2", ("image tiny -> other",))]
    assert "-/+ replace  instance web-1" in str(plan)


def test_removed_resources_are_deleted_instances_first():
    rec, live = _converged()
    plan = compute(parse("network:\n  lab: {cidr: 10.80.0.0/24}\n", {}, "s"), rec, live)
    assert _ops(plan) == [("delete", "instance", "db"), ("delete", "instance", "web-1"),
                          ("delete", "instance", "web-2"), ("delete", "volume", "data")]


def test_count_shrinks_from_the_top():
    rec, live = _converged()
    plan = compute(parse(BODY.replace("count: 2", "count: 1"), {}, "s"), rec, live)
    assert _ops(plan) == [("delete", "instance", "web-2")]


def test_network_replace_replaces_its_instances():
    rec, live = _converged()
    plan = compute(parse(BODY.replace("10.80.0.0/24", "10.81.0.0/24"), {}, "s"), rec, live)
    assert [(a.op, a.name) for a in plan.actions] == [
        ("replace", "lab"), ("replace", "db"), ("replace", "web-1"), ("replace", "web-2")]


def test_volume_grows_in_place_and_never_shrinks():
    rec, live = _converged()
    plan = compute(parse(BODY.replace("size: 1G", "size: 2G"), {}, "s"), rec, live)
    assert [(a.op, a.changes) for a in plan.actions] == [("update", ("size 1G -> 2G",))]
    live.volumes["data"]["size"] = 4 << 30
    with pytest.raises(InvalidSpec, match="only grow"):
        compute(parse(BODY, {}, "s"), rec, live)


def test_deleted_behind_our_back_is_recreated_and_reported():
    rec, live = _converged()
    del live.domains["web-2"]
    plan = compute(parse(BODY, {}, "s"), rec, live)
    assert _ops(plan) == [("create", "instance", "web-2")]
    assert plan.drift == ["instance web-2 was deleted behind nbcloud's back"]
    assert ("instance", "web-2", "s", "deleted behind nbcloud's back") in drift(rec, live)


def test_a_lost_instance_is_made_again_and_said_to_be_lost():
    rec, live = _converged()
    del live.domains["db"]
    live.lost = {"db": "h3"}
    plan = compute(parse(BODY, {}, "s"), rec, live)
    assert _ops(plan) == [("create", "instance", "db")]
    assert plan.drift == ["instance db is lost with host h3, which is down"]


def test_an_instance_on_another_host_than_its_pin_is_moved_live():
    rec, live = _converged()
    for name, host in (("web-1", "h1"), ("web-2", "h2"), ("db", "h1")):
        live.domains[name]["host"] = host
    body = BODY.replace("db: {flavor: t.nano", "db: {host: h2, flavor: t.nano")
    plan = compute(parse(body, {}, "s"), rec, live)
    assert [(a.op, a.name, a.changes) for a in plan.actions] == [
        ("update", "db", ("host h1 -> h2 (a live migration)",))]
    live.domains["db"]["host"] = "h2"
    assert not compute(parse(body, {}, "s"), rec, live)
    # one host: entries say no host, and the pin is placement's business alone
    for entry in live.domains.values():
        entry.pop("host")
    assert not compute(parse(body, {}, "s"), rec, live)


def test_a_pin_that_is_not_a_host_name_is_refused_in_one_line():
    with pytest.raises(InvalidSpec, match=r"instance.db.host '\.\./h1' is not allowed"):
        parse(BODY.replace("db: {flavor", "db: {host: ../h1, flavor"), {}, "s")


def test_resized_behind_our_back_is_an_update():
    rec, live = _converged()
    live.domains["db"]["memory"] = 512 * M
    plan = compute(parse(BODY, {}, "s"), rec, live)
    assert [(a.op, a.name) for a in plan.actions] == [("update", "db")]
    assert "memory 512M, flavor t.nano says 128M" in plan.actions[0].changes[0]
    assert any("changed behind" in row[3] for row in drift(rec, live))


def test_same_name_domain_without_the_mark_is_refused():
    live = LiveState(foreign_domains=["db"])
    with pytest.raises(InvalidSpec, match="without nbcloud's mark"):
        compute(parse(BODY, {}, "s"), [], live)
    assert ("instance", "db", "-", "unmanaged (no nbcloud mark): never touched") in \
        drift([], live)


def test_resources_of_another_stack_are_refused():
    rec = [Resource("u", "network", "lab", "other", {}, None, "active")]
    with pytest.raises(InvalidSpec, match="belongs to stack 'other'"):
        compute(parse(BODY, {}, "s"), rec, LiveState())


def test_html_is_escaped_and_coloured():
    plan = compute(parse(BODY, {}, "s"), [], LiveState())
    page = plan._repr_html_()
    assert "color:#2a7d2a" in page and "<script" not in page
    plan.stack = "<script>"
    assert "&lt;script&gt;" in plan._repr_html_()


def test_live_read_on_the_test_driver(test_cloud, unique):
    net = unique("pl")
    test_cloud.networks.create(net, "10.91.0.0/24", "isolated", stack="s")
    live = read_live(test_cloud.services)
    assert live.networks[net] == {"cidr": "10.91.0.0/24", "mode": "isolated",
                                  "managed": True, "active": True}
    assert "test" in live.foreign_domains
    body = f"network:\n  {net}: {{cidr: 10.91.0.0/24, mode: isolated}}\n"
    assert test_cloud.stacks.plan("s", body).actions == []
    plan = test_cloud.stacks.destroy("s")
    assert _ops(plan) == [("delete", "network", net)]
    assert net not in test_cloud.provider.network_names()


def test_cell_magic_plans_applies_and_destroys(tmp_path):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    import nbcloud
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbcloud")
    shell.run_line_magic("config", f"CloudMagics.inventory = '{tmp_path / 'inv.sqlite'}'")
    shell.run_line_magic("cloud", "connect test:///default")
    try:
        shell.user_ns["cidr"] = "10.92.0.0/24"
        body = "network:\n  cm-net: {cidr: '{cidr}', mode: isolated}\n"
        plan = shell.run_cell_magic("cloud", "plan --stack cm", body)
        assert _ops(plan) == [("create", "network", "cm-net")]
        assert nbcloud._magics.api.inventory.operations(10) == []  # a plan changes nothing
        shell.run_cell_magic("cloud", "apply --stack cm", body)
        assert "no changes" in str(shell.run_cell_magic("cloud", "apply --stack cm", body))
        assert "cm" in str(shell.run_line_magic("cloud", "stack list"))
        assert "cm-net" in str(shell.run_line_magic("cloud", "stack show cm"))
        assert "drift" in str(shell.run_line_magic("cloud", "drift"))
        with pytest.raises(UsageError, match="names no variable"):
            shell.run_cell_magic("cloud", "apply --stack cm", "volume:\n  v: {size: {nope}}\n")
        with pytest.raises(UsageError, match="invalid choice"):
            shell.run_cell_magic("cloud", "frobnicate", body)
        shell.run_line_magic("cloud", "stack destroy cm")
        assert "cm-net" not in nbcloud._magics.api.provider.network_names()
    finally:
        shell.run_line_magic("unload_ext", "nbcloud")


def test_stack_show_prints_sizes_in_units_and_leaves_empty_fields_out(test_cloud):
    test_cloud.stacks.apply("ss", "network:\n  ss-net: {cidr: 10.93.0.0/24}\n"
                                  "volume:\n  ss-data: {size: 128M, tier: hdd}\n")
    # an instance row as a create records it, with fields left empty
    test_cloud.inventory.put(test_cloud.uri, "instance", "ss-web", stack="ss",
                             state="running",
                             spec={"image": "tiny", "flavor": "t.nano", "user_data": "",
                                   "networks": ["ss-net"], "volumes": [], "hostkey": "k"})
    shown = {row[1]: row[3] for row in test_cloud.stacks.show("ss").rows}
    assert shown["ss-data"] == "pool=nbcloud-hdd, size=128M, tier=hdd"
    assert shown["ss-web"] == "flavor=t.nano, image=tiny, networks=ss-net"
    text = str(test_cloud.stacks.show("ss"))
    assert "134217728" not in text and "=," not in text and not text.rstrip().endswith("=")
