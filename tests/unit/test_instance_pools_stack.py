"""The `ipool:` section of a stack: parsing (one-line refusals naming the path), plans
(create, scale, refuse a template change, delete; the pool's members are never the
stack's instances) and apply / re-apply / scale / remove / destroy on test:///default,
with instance creation replaced by a marked test-driver domain (no image, no boot)."""
from __future__ import annotations

import itertools

import pytest

from nbcloud.core.spec import InvalidSpec
from nbcloud.core.stackfile import parse
from nbcloud.inventory import Resource
from nbcloud.plan.compare import LiveState, compute
from nbcloud.providers.libvirt import xml as lx

BODY = """
network:
  webnet: {cidr: 10.80.0.0/24}
ipool:
  web: {image: tiny, flavor: t.nano, network: webnet, size: 2}
"""


def _refused(text, match):
    with pytest.raises(InvalidSpec, match=match) as err:
        parse(text, {}, "s")
    assert "\n" not in str(err.value)
    return str(err.value)


# ----- parsing ---------------------------------------------------------------------------
def test_pool_entry_parses_with_defaults_and_a_policy():
    stack = parse(BODY + "  api: {secgroup: fw, scale_out: 'cpu>60% for 1m', min: 1, max: 4}"
                  "\nsecgroup:\n  fw: {rules: ['tcp 22']}\n", {}, "s")
    web, api = stack.ipools["web"], stack.ipools["api"]
    assert (web.image, web.flavor, web.network, web.size) == ("tiny", "t.nano", "webnet", 2)
    assert (api.network, api.size, api.secgroups) == ("nbcloud", 1, ("fw",))
    assert api.policy == {"scale_out": "cpu>60% for 1m", "scale_in": None, "min": 1,
                          "max": 4}
    assert stack.members() == {}    # a pool's members are not the stack's instances


@pytest.mark.parametrize("entry, match", [
    ("{size: 2, colour: red}", r"^ipool\.web\.colour is unknown: use image, flavor"),
    ("{size: two}", r"^ipool\.web\.size is str 'two': use a whole number"),
    ("{size: 0}", r"^ipool\.web\.size 0 is not allowed: use a whole number from 1 to 32"),
    ("{size: 33}", r"^ipool\.web\.size 33 is not allowed"),
    ("{size: true}", r"^ipool\.web\.size is bool"),
    ("{network: [a, b]}", r"^ipool\.web\.network is list"),
    ("{network: Web_Net}", r"^ipool\.web\.network 'Web_Net' is not allowed"),
    ("{flavor: x.huge}", r"^ipool\.web: flavor 'x.huge' does not exist"),
    ("{scale_out: 'cpu>>1 for 1m'}", r"^ipool\.web: scale_out 'cpu>>1 for 1m' is not a rule"),
    ("{size: 5, scale_out: 'cpu>50% for 1m', min: 1, max: 3}",
     r"^ipool\.web\.size 5 is outside min 1 \.\. max 3"),
    ("{secgroup: [1]}", r"^ipool\.web\.secgroup holds 1"),
])
def test_bad_pool_entries_are_refused_in_one_line(entry, match):
    _refused(f"ipool:\n  web: {entry}\n", match)


def test_an_instance_named_like_a_pool_member_is_refused():
    _refused("instance:\n  web: {count: 2}\nipool:\n  web: {size: 1}\n",
             r"instance 'web-1' would clash with the members of ipool\.web")
    _refused("instance:\n  web-7: {}\nipool:\n  web: {}\n", "web-7")


def test_lb_on_another_network_is_refused():
    _refused("loadbalancer:\n  front: {network: a}\nipool:\n  web: {network: b, lb: front}\n",
             r"ipool\.web\.lb 'front' is on network 'a', the pool on 'b'")


# ----- plans (pure) ----------------------------------------------------------------------
def _dom(stack="s", nets="webnet"):
    return {"meta": {"kind": "instance", "stack": stack, "flavor": "t.nano", "image": "tiny",
                     "networks": nets, "volumes": ""},
            "vcpus": 1, "memory": 128 << 20, "running": True}


def _pool_spec(members, **template):
    t = {"image": "tiny", "flavor": "t.nano", "network": "webnet", "user_data": None,
         "secgroups": []} | template
    return {"members": members, "lb": None, "policy": None, "resized": 0.0, "template": t}


def _converged(members=("web-1", "web-2"), **template):
    spec = _pool_spec(list(members), **template)
    live = LiveState(domains={m: _dom() for m in members},
                     networks={"webnet": {"cidr": "10.80.0.0/24", "mode": "nat",
                                          "managed": True}},
                     ipools={"web": spec})
    rec = [Resource("u", "network", "webnet", "s", {}, None, "active"),
           Resource("u", "ipool", "web", "s", spec, None, "active")]
    rec += [Resource("u", "instance", m, "s", {}, None, "running") for m in members]
    return rec, live


def _ops(plan):
    return [(a.op, a.kind, a.name) for a in plan.actions]


def test_empty_world_creates_the_network_then_the_pool():
    plan = compute(parse(BODY, {}, "s"), [], LiveState())
    assert _ops(plan) == [("create", "network", "webnet"), ("create", "ipool", "web")]
    assert "  + create   ipool web  (2 x tiny t.nano on webnet)" in str(plan)


def test_converged_pool_has_no_changes_and_its_members_are_not_deletes():
    rec, live = _converged()
    plan = compute(parse(BODY, {}, "s"), rec, live)
    assert plan.actions == [] and plan.drift == []
    assert "no changes" in str(plan)


def test_member_deleted_behind_our_back_is_reported():
    rec, live = _converged()
    del live.domains["web-2"]
    plan = compute(parse(BODY, {}, "s"), rec, live)
    assert plan.drift == ["instance web-2 of ipool web was deleted behind nbcloud's back"]


def test_size_change_is_an_update_in_place():
    rec, live = _converged()
    plan = compute(parse(BODY.replace("size: 2", "size: 3"), {}, "s"), rec, live)
    assert _ops(plan) == [("update", "ipool", "web")]
    assert "~ update   ipool web  (size 2 -> 3)" in str(plan)
    plan = compute(parse(BODY.replace("size: 2", "size: 1"), {}, "s"), rec, live)
    assert plan.actions[0].changes == ("size 2 -> 1",)


def test_policy_change_is_an_update_and_the_autoscaler_owns_the_size():
    rec, live = _converged()
    body = BODY.replace("size: 2}", "size: 1, scale_out: 'cpu>50% for 1m', min: 1, max: 3}")
    plan = compute(parse(body, {}, "s"), rec, live)
    assert plan.actions[0].changes == ("autoscale by hand -> out when cpu>50% for 1m, "
                                       "size 1..3",)   # no size change: 2 is in 1..3


@pytest.mark.parametrize("change, key", [("image: tiny", "image: debian"),
                                         ("flavor: t.nano", "flavor: m.nano"),
                                         ("network: webnet", "network: nbcloud")])
def test_template_change_is_refused_with_delete_and_recreate(change, key):
    rec, live = _converged()
    live.networks["nbcloud"] = {"cidr": "10.0.0.0/24", "mode": "nat", "managed": True}
    with pytest.raises(InvalidSpec, match=rf"^ipool\.web\.{key.split(':')[0]} .* cannot "
                       "change in place: delete the pool") as err:
        compute(parse(BODY.replace(change, key), {}, "s"), rec, live)
    assert "\n" not in str(err.value)


def test_removed_pool_is_deleted_first_and_alone():
    rec, live = _converged()
    plan = compute(parse("network:\n  webnet: {cidr: 10.80.0.0/24}\n", {}, "s"), rec, live)
    assert _ops(plan) == [("delete", "ipool", "web")]   # not web-1, web-2: the pool's
    plan = compute(parse("", {}, "s"), rec, live)
    assert _ops(plan) == [("delete", "ipool", "web"), ("delete", "network", "webnet")]


def test_unknown_references_and_taken_member_names_are_refused():
    with pytest.raises(InvalidSpec, match=r"^ipool\.web\.network names 'nonet', which is "
                       "neither in the network: section nor an existing network"):
        compute(parse("ipool:\n  web: {network: nonet}\n", {}, "s"), [], LiveState())
    with pytest.raises(InvalidSpec, match=r"^ipool\.web\.secgroup names 'fw'"):
        compute(parse("ipool:\n  web: {secgroup: fw}\n", {}, "s"), [],
                LiveState(networks={"nbcloud": {}}))
    with pytest.raises(InvalidSpec, match=r"^ipool\.web\.lb names 'front'"):
        compute(parse("ipool:\n  web: {lb: front}\n", {}, "s"), [],
                LiveState(networks={"nbcloud": {}}))
    taken = LiveState(domains={"web-2": _dom(stack="other")}, networks={"webnet": {}})
    with pytest.raises(InvalidSpec, match=r"^ipool\.web: instance 'web-2' exists already"):
        compute(parse("ipool:\n  web: {network: webnet, size: 2}\n", {}, "s"), [], taken)
    # growing: the new member's name is checked too
    rec, live = _converged()
    live.domains["web-3"] = _dom(stack="other")
    with pytest.raises(InvalidSpec, match="'web-3' exists already"):
        compute(parse(BODY.replace("size: 2", "size: 3"), {}, "s"), rec, live)


def test_instances_of_the_stack_become_a_pool_of_the_same_names():
    """`instance: web {count: 2}` -> `ipool: web {size: 2}`: the instances go first."""
    rec, live = _converged(members=())
    rec = [r for r in rec if r.kind != "ipool"]
    live.ipools = {}
    live.domains = {"web-1": _dom(), "web-2": _dom()}
    rec += [Resource("u", "instance", m, "s", {}, None, "running") for m in live.domains]
    plan = compute(parse(BODY, {}, "s"), rec, live)
    assert _ops(plan) == [("delete", "instance", "web-1"), ("delete", "instance", "web-2"),
                          ("create", "ipool", "web")]


def test_a_pool_of_another_stack_is_refused():
    rec, live = _converged()
    with pytest.raises(InvalidSpec, match="ipool 'web' belongs to stack 's'"):
        compute(parse("ipool:\n  web: {network: webnet, size: 2}\n", {}, "t"), rec, live)


# ----- apply on the test driver ---------------------------------------------------------
@pytest.fixture
def fake_boot(monkeypatch):
    """instances.create -> a marked, running test-driver domain and its inventory row, as
    the real one leaves them; the image store answers for any image."""
    from nbcloud.providers.libvirt.images import ImageStore
    from nbcloud.services.instances import Instances
    hosts = itertools.count(10)

    def create(self, name, image="tiny", flavor="t.nano", network=None, *, stack="adhoc",
               user_data=None, **_kw):
        nets = [network] if isinstance(network, str) else list(network)
        ip = f"10.83.0.{next(hosts)}"
        meta = {"kind": "instance", "stack": stack, "image": image, "flavor": flavor,
                "networks": ",".join(nets), "volumes": "", "key": "default", "ip": ip,
                "ips": f"{nets[0]}={ip}"}
        uuid = self.provider.define(lx.DomainDef(
            name=name, vcpus=1, memory=128 << 20, domain_type="test",
            boot=lx.KernelBoot("/k", "/i", ""), metadata=meta))
        self.provider.start(name)
        self.ctx.inventory.put("instance", name, state="running",
                                 uuid=uuid, stack=stack,
                                 spec={"image": image, "flavor": flavor, "networks": nets})
    monkeypatch.setattr(Instances, "create", create)
    monkeypatch.setattr(ImageStore, "get", lambda self, name: name)


def _body(net: str, pool: str, size: int) -> str:
    return (f"network:\n  {net}: {{cidr: 10.83.0.0/24, mode: isolated}}\n"
            f"ipool:\n  {pool}: {{image: tiny, flavor: t.nano, network: {net}, "
            f"size: {size}}}\n")


def _rows(cloud, stack):
    return sorted((r.kind, r.name) for r in cloud.inventory.resources(cloud.uri)
                  if r.stack == stack)


def test_apply_reapply_scale_remove_on_the_test_driver(test_cloud, unique, fake_boot):
    stack, net, pool = unique("ipst"), unique("ipnet"), unique("ipweb")
    one, two, three = (f"{pool}-{i}" for i in (1, 2, 3))
    try:
        plan = test_cloud.stacks.apply(stack, _body(net, pool, 2))
        assert _ops(plan) == [("create", "network", net), ("create", "ipool", pool)]
        assert test_cloud.ipools.get(pool).members == [one, two]
        assert all(test_cloud.provider.state(m) == "running" for m in (one, two))
        assert _rows(test_cloud, stack) == [("instance", one), ("instance", two),
                                            ("ipool", pool), ("network", net)]
        assert test_cloud.provider.metadata(one)["stack"] == stack
        # re-applying changes nothing, and the members are no drift
        assert test_cloud.stacks.apply(stack, _body(net, pool, 2)).actions == []
        assert not [r for r in test_cloud.stacks.drift().rows if r[1].startswith(pool)]

        plan = test_cloud.stacks.plan(stack, _body(net, pool, 3))
        assert [a.line() for a in plan.actions] == [f"  ~ update   ipool {pool}  (size 2 -> 3)"]
        test_cloud.stacks.apply(stack, _body(net, pool, 3))
        assert test_cloud.ipools.get(pool).members == [one, two, three]
        test_cloud.stacks.apply(stack, _body(net, pool, 1))
        assert test_cloud.ipools.get(pool).members == [one]
        assert not test_cloud.provider.exists(two) and not test_cloud.provider.exists(three)
        scales = [op for op in test_cloud.inventory.operations(50)
                  if op["kind"] == "ipool" and op["verb"] == "scale"]
        assert len(scales) == 2 and f"(stack {stack})" in scales[0]["detail"]

        # a template change is refused, and nothing changes
        with pytest.raises(InvalidSpec, match=rf"ipool\.{pool}\.flavor t\.nano -> m\.nano"):
            test_cloud.stacks.apply(stack, _body(net, pool, 1).replace("t.nano", "m.nano"))
        assert test_cloud.provider.metadata(one)["flavor"] == "t.nano"

        # removing the entry deletes the pool and its members, the network stays
        plan = test_cloud.stacks.apply(stack, f"network:\n  {net}: "
                                              "{cidr: 10.83.0.0/24, mode: isolated}\n")
        assert _ops(plan) == [("delete", "ipool", pool)]
        assert not test_cloud.provider.exists(one)
        assert _rows(test_cloud, stack) == [("network", net)]
    finally:
        test_cloud.stacks.destroy(stack)
    assert _rows(test_cloud, stack) == []


def test_scale_rule_is_added_and_removed_in_place(test_cloud, unique, fake_boot):
    stack, net, pool = unique("ipst"), unique("ipnet"), unique("ipweb")
    rule = "size: 2, scale_out: 'cpu>50% for 1m', min: 1, max: 3"
    try:
        test_cloud.stacks.apply(stack, _body(net, pool, 2))
        plan = test_cloud.stacks.apply(stack, _body(net, pool, 2).replace("size: 2", rule))
        assert plan.actions[0].changes == ("autoscale by hand -> out when cpu>50% for 1m, "
                                           "size 1..3",)
        assert test_cloud.ipools.get(pool).policy.max == 3
        assert any(op["verb"] == "update" and op["name"] == pool
                   for op in test_cloud.inventory.operations(20))
        # with the rule, the declared size is only where the pool started
        assert test_cloud.stacks.plan(stack, _body(net, pool, 2).replace(
            "size: 2", rule.replace("size: 2", "size: 1"))).actions == []
        # without it again, the declared size is applied
        plan = test_cloud.stacks.apply(stack, _body(net, pool, 1))
        assert plan.actions[0].changes[-1] == "size 2 -> 1"
        assert test_cloud.ipools.get(pool).policy is None
        assert test_cloud.ipools.get(pool).members == [f"{pool}-1"]
    finally:
        test_cloud.stacks.destroy(stack)
    assert _rows(test_cloud, stack) == []


def test_bad_reference_makes_nothing(test_cloud, unique, fake_boot):
    stack, net = unique("ipst"), unique("ipnet")
    before = len(test_cloud.inventory.operations(1000))
    body = (f"network:\n  {net}: {{cidr: 10.84.0.0/24, mode: isolated}}\n"
            "ipool:\n  ipx: {network: nonet, size: 2}\n")
    with pytest.raises(InvalidSpec, match=r"^ipool\.ipx\.network names 'nonet'"):
        test_cloud.stacks.apply(stack, body)
    assert net not in test_cloud.provider.network_names()
    assert _rows(test_cloud, stack) == [] and not test_cloud.provider.exists("ipx-1")
    assert len(test_cloud.inventory.operations(1000)) == before


def test_missing_image_is_refused_before_anything_is_made(test_cloud, unique):
    from nbcloud.core.errors import NotFound
    stack, net = unique("ipst"), unique("ipnet")
    body = _body(net, "ipy", 1).replace("image: tiny", "image: ipnone")
    with pytest.raises(NotFound, match="image 'ipnone' does not exist"):
        test_cloud.stacks.apply(stack, body)
    assert net not in test_cloud.provider.network_names() and _rows(test_cloud, stack) == []


def test_cell_magic_apply_and_stack_destroy(ip, unique, fake_boot):
    from IPython.core.error import UsageError

    import nbcloud
    stack, net, pool = unique("ipst"), unique("ipnet"), unique("ipweb")
    ip.user_ns["poolsize"] = 2
    body = _body(net, pool, 2).replace("size: 2", "size: {poolsize}")
    plan = ip.run_cell_magic("cloud", f"apply --stack {stack}", body)
    assert ("create", "ipool", pool) in _ops(plan)
    cloud = nbcloud._magics.api
    assert cloud.ipools.get(pool).members == [f"{pool}-1", f"{pool}-2"]
    assert "no changes" in str(ip.run_cell_magic("cloud", f"plan --stack {stack}", body))
    assert pool in str(ip.run_line_magic("cloud", f"stack show {stack}"))
    with pytest.raises(UsageError, match=r"ipool\.ipx\.size 40 is not allowed"):
        ip.run_cell_magic("cloud", f"apply --stack {stack}", "ipool:\n  ipx: {size: 40}\n")
    ip.run_line_magic("cloud", f"stack destroy {stack}")
    assert not cloud.provider.exists(f"{pool}-1") and not cloud.provider.exists(f"{pool}-2")
    assert [r for r in cloud.inventory.resources(cloud.uri) if r.stack == stack] == []


def test_pool_joins_a_balancer_of_its_stack(test_cloud, unique, fake_boot,
                                                        monkeypatch, tmp_path):
    monkeypatch.setenv("NBCLOUD_HOME", str(tmp_path / "home"))
    stack, net, pool, lb = unique("ipst"), unique("ipnet"), unique("ipweb"), unique("iplb")
    body = (f"network:\n  {net}: {{cidr: 10.83.0.0/24, mode: isolated}}\n"
            f"loadbalancer:\n  {lb}: {{network: {net}, port: 8080, member_port: 80}}\n"
            f"ipool:\n  {pool}: {{network: {net}, size: 2, lb: {lb}}}\n")
    members = [f"{pool}-1", f"{pool}-2"]
    try:
        plan = test_cloud.stacks.apply(stack, body)
        assert _ops(plan)[-2:] == [("create", "loadbalancer", lb), ("create", "ipool", pool)]
        assert test_cloud.lbs.get(lb).members == members
        # the members the pool added to the balancer are no change (secgroups: the test
        # driver has no nwfilters; tests/integration/test_instance_pools_stack.py has them)
        assert test_cloud.stacks.plan(stack, body).actions == []
        # a change of the balancer keeps the pool's members in it
        test_cloud.stacks.apply(stack, body.replace("member_port: 80",
                                                    "member_port: 80, algorithm: leastconn"))
        assert test_cloud.lbs.get(lb).members == members
        test_cloud.stacks.apply(stack, body.replace("size: 2", "size: 1"))
        assert test_cloud.lbs.get(lb).members == members[:1]
        with pytest.raises(InvalidSpec, match=rf"ipool\.{pool}\.lb {lb} -> None: a pool's "
                           "template cannot change in place"):
            test_cloud.stacks.plan(stack, body.replace(f", lb: {lb}", ""))
    finally:
        test_cloud.stacks.destroy(stack)
    assert _rows(test_cloud, stack) == []
    assert not any(test_cloud.provider.exists(m) for m in members)
