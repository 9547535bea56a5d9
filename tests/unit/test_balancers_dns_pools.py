"""Load balancers, DNS records, instance pools and autoscale rules on test:///default
(HAProxy configurations are checked by the real `haproxy -c`; no process is started)."""
from __future__ import annotations

import shlex
import time

import pytest

from nbcloud.core.errors import AlreadyExists, CloudError
from nbcloud.core.scaling import Decision, Policy, Rule, decide, pool_series
from nbcloud.core.spec import InvalidSpec
from nbcloud.core.stackfile import parse
from nbcloud.plan.compare import compute
from nbcloud.providers.libvirt import haproxy
from nbcloud.providers.libvirt import xml as lx
from nbcloud.ui import commands
from nbcloud.workflows.autoscaler import Autoscaler
from nbcloud.workflows.stacks import read_live


def _domain(cloud, name: str, network: str, ip: str) -> None:
    """A running domain marked as nbcloud's with an address on `network`."""
    meta = {"kind": "instance", "stack": "adhoc", "image": "tiny", "flavor": "t.nano",
            "networks": network, "ip": ip, "ips": f"{network}={ip}", "key": "default"}
    dom = cloud.provider.conn.defineXML(lx.domain_xml(lx.DomainDef(
        name=name, vcpus=1, memory=128 << 20, domain_type="test",
        boot=lx.KernelBoot("/k", "/i", ""), disks=(), nics=(), metadata=meta)))
    dom.create()


def _drop(cloud, *names: str) -> None:
    for name in names:
        dom = cloud.provider.conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()


@pytest.fixture
def web(test_cloud, unique, monkeypatch, tmp_path):
    """Three marked domains on the test driver's `default` network, one on another."""
    monkeypatch.setenv("NBCLOUD_HOME", str(tmp_path / "home"))
    base = unique("lbw")
    names = [f"{base}-{i}" for i in (1, 2, 3)]
    for i, name in enumerate(names):
        _domain(test_cloud, name, "default", f"192.168.122.{20 + i}")
    other = unique("lbo")
    _domain(test_cloud, other, "elsewhere", "10.1.2.3")
    yield base, names, other
    _drop(test_cloud, *names, other)


def _run(cloud, line: str):
    return commands.run(cloud, commands.parse(shlex.split(line)))


# ----- HAProxy configuration ---------------------------------------------------------------
def test_config_has_health_checks_algorithm_and_servers(tmp_path):
    backends = [haproxy.Backend("web-1", "10.77.0.10", 80),
                haproxy.Backend("web-2", "10.77.0.11", 80)]
    for algorithm in ("roundrobin", "leastconn"):
        text = haproxy.config_text("lb1", "10.77.0.1", 8080, algorithm, backends)
        assert f"balance {algorithm}" in text
        assert "bind 10.77.0.1:8080" in text and "mode tcp" in text
        assert "default-server check inter 1s fall 2 rise 1" in text
        assert "server web-2 10.77.0.11:80" in text and "usesrc" not in text
        haproxy.check(text, tmp_path)    # the real haproxy accepts it
    kept = haproxy.config_text("lb1", "10.77.0.1", 80, "roundrobin", backends, True)
    assert "source 0.0.0.0 usesrc clientip" in kept
    haproxy.check(kept, tmp_path)
    with pytest.raises(CloudError, match="haproxy refused"):
        haproxy.check(kept.replace("balance roundrobin", "balance nonsense"), tmp_path)


# ----- load balancers --------------------------------------------------------------------------
def test_lb_expands_globs_on_its_network_and_records_the_spec(test_cloud, web):
    base, names, _other = web
    lb = test_cloud.lbs.create(f"{base}-lb", "default", 8080, members=[f"{base}-*"],
                               algorithm="leastconn", member_port=80)
    try:
        assert lb.members == names
        spec = lb.spec
        assert spec["network"] == "default" and spec["port"] == 8080
        assert spec["algorithm"] == "leastconn" and spec["address"] == "192.168.122.1"
        text = test_cloud.provider.balancer_config(lb.name, spec, test_cloud.lbs.addresses(spec["network"]))
        assert f"server {base}-3 192.168.122.22:80" in text
        test_cloud.lbs.remove_members(lb.name, [f"{base}-2"])
        assert lb.members == [f"{base}-1", f"{base}-3"]
        assert f"{base}-2 " not in test_cloud.provider.balancer_config(lb.name, lb.spec, test_cloud.lbs.addresses(lb.spec["network"]))
        test_cloud.lbs.add_members(lb.name, f"{base}-2")
        assert sorted(lb.members) == names
        shown = str(_run(test_cloud, "lb list"))
        assert lb.name in shown and "192.168.122.1:8080" in shown
        assert "leastconn" in lb._repr_html_()
    finally:
        _run(test_cloud, f"lb delete {base}-lb")
    assert not any(x.name == f"{base}-lb" for x in test_cloud.lbs.list())


def test_bad_lb_input_is_one_line_and_changes_nothing(test_cloud, web):
    base, names, other = web
    test_cloud.lbs.create(f"{base}-lb", "default", 80, members=[names[0]])
    ops = len(test_cloud.inventory.operations(1000))
    records = test_cloud.inventory.resources(test_cloud.uri, "loadbalancer")
    cases = [(f"lb create {base}-x --network default --port 82 --members {other}",
              f"instance '{other}' is not on network 'default'"),
             (f"lb create {base}-x --network default --port 82 --members 'nope-*'",
              "matches no instance"),
             (f"lb create {base}-x --network default --port 70000", "1 to 65535"),
             (f"lb create {base}-x --network default --algorithm random", "invalid choice"),
             (f"lb create {base}-x --network default", "taken by load balancer"),
             (f"lb create {base}-lb --network default --port 81", "exists already"),
             (f"lb create {base}-x --network nonet --port 82", "does not exist"),
             (f"lb member add {base}-lb {other}", "is not on network"),
             (f"lb member remove {base}-lb {names[2]}", "is not a member")]
    for line, message in cases:
        with pytest.raises((CloudError, InvalidSpec, commands.CommandError)) as err:
            _run(test_cloud, line)
        assert message in str(err.value) and "\n" not in str(err.value), line
    assert test_cloud.inventory.resources(test_cloud.uri, "loadbalancer") == records
    assert len(test_cloud.inventory.operations(1000)) == ops
    test_cloud.lbs.delete(f"{base}-lb")


# ----- DNS ------------------------------------------------------------------------------------
def test_dns_records_and_aliases_on_the_network_definition(test_cloud, unique):
    net = unique("lbn")
    test_cloud.networks.create(net, f"10.{150 + int(net[3:]) % 90}.0.0/24", "isolated")
    nine = str(test_cloud.provider.network(net).network.network_address + 9)
    try:
        _run(test_cloud, f"dns add {net} www {nine}")
        _run(test_cloud, f"dns add {net} api --cname www")
        hosts = dict(test_cloud.provider.network(net).dns_hosts)
        assert hosts[nine] == ("www", "api")
        rows = {r["name"]: r for r in _run(test_cloud, f"dns list {net}")}
        assert rows["api"]["type"] == "CNAME" and nine in rows["api"]["value"]
        for line, message in ((f"dns add {net} www {nine}", "already a name"),
                              (f"dns add {net} x 10.9.9.300", "not an IPv4 address"),
                              (f"dns add {net} x --cname nothing", "not a name on network"),
                              (f"dns add {net} x", "an address, --cname"),
                              (f"dns add {net} Bad {nine}", "not allowed"),
                              (f"dns delete {net} nothing", "not a record")):
            with pytest.raises((CloudError, InvalidSpec)) as err:
                _run(test_cloud, line)
            assert message in str(err.value), line
        assert dict(test_cloud.provider.network(net).dns_hosts) == hosts
        _run(test_cloud, f"dns delete {net} www")
        assert dict(test_cloud.provider.network(net).dns_hosts) == {nine: ("api",)}
        # the alias follows its target: here the target went, so it stays where it was
        assert test_cloud.dns.refresh(net) == []
        _run(test_cloud, f"dns delete {net} api")
        assert test_cloud.provider.network(net).dns_hosts == ()
    finally:
        test_cloud.networks.delete(net)


# ----- autoscale rules ------------------------------------------------------------------------
def test_rules_parse_and_refuse_what_is_not_a_rule():
    r = Rule.parse("cpu>70% for 1m")
    assert (r.metric, r.op, r.threshold, r.window) == ("cpu", ">", 70.0, 60.0)
    assert Rule.parse("net_rx >= 2m for 30s").threshold == 2e6
    assert Rule.parse("CPU<20% for 5M").window == 300
    for bad, message in (("cpu>70%", "is not a rule"), ("cpu>>70% for 1m", "is not a rule"),
                         ("load>5 for 1m", "is not monitored"),
                         ("mem>50% for 1m", "only cpu is a percentage"),
                         ("cpu>50% for 0s", "1 s to 1 day"), (None, "is not a rule")):
        with pytest.raises(InvalidSpec, match=message):
            Rule.parse(bad)
    for args, message in ((("cpu>70% for 1m", None, 3, 2), "more than --max"),
                          (("cpu<70% for 1m", None, 1, 2), "with > or >="),
                          ((None, "cpu>20% for 1m", 1, 2), "with < or <="),
                          (("cpu>50% for 1m", "cpu<60% for 1m", 1, 2), "flap"),
                          (("cpu>50% for 1m", None, 0, 2), "--min")):
        with pytest.raises(InvalidSpec, match=message):
            Policy.parse(*args)
    assert Policy.parse(None, None) is None
    p = Policy.parse("cpu>70% for 1m", "cpu<20% for 5m", 1, 5)
    assert Policy.from_json(p.to_json()) == p


def test_decisions_need_a_whole_window_and_respect_the_bounds():
    p = Policy.parse("cpu>70% for 10s", "cpu<20% for 10s", 1, 2)
    now = 1000.0
    hot = [(now - 10 + i, 90.0) for i in range(11)]
    assert decide(p, 1, hot, now) == Decision("out", 2, "cpu>70% for 10s (mean 90.0)")
    assert decide(p, 2, hot, now).action == "hold"                   # at --max
    assert decide(p, 1, hot[-5:], now).action == "hold"              # window not covered
    dip = hot[:5] + [(now - 5, 50.0)] + hot[6:]
    assert decide(p, 1, dip, now).action == "out"                    # the mean holds
    half = [(t, 90.0 if i % 2 else 40.0) for i, (t, _v) in enumerate(hot)]
    assert decide(p, 1, half, now).action == "hold"                  # the mean does not
    assert decide(p, 1, hot, now + 30).action == "hold"              # samples too old
    cold = [(t, 5.0) for t, _v in hot]
    assert decide(p, 2, cold, now).action == "in"
    assert decide(p, 1, cold, now).action == "hold"                  # at --min
    assert decide(p, 3, [], now) == Decision("in", 2, "size 3 is above --max 2")
    rows = {"a": [{"t": 1.0, "cpu": 80.0}, {"t": 2.0, "cpu": 90.0}],
            "b": [{"t": 1.0, "cpu": 20.0}, {"t": 2.0, "cpu": None}]}
    assert pool_series(rows, "cpu") == [(1.0, 50.0), (2.0, 90.0)]


def test_autoscaler_reads_the_samples_table_and_logs_holds_once(test_cloud, unique):
    pool = unique("lbp")
    now = time.time()
    policy = Policy.parse("cpu>50% for 5s", "cpu<10% for 5s", 1, 3)
    test_cloud.inventory.put(test_cloud.uri, "ipool", pool, state="active",
                             spec={"members": [f"{pool}-1", f"{pool}-2"], "lb": None,
                                   "resized": 0.0, "policy": policy.to_json(),
                                   "template": {"image": "tiny", "flavor": "t.nano",
                                                "network": "default"}})
    test_cloud.inventory.add_samples(test_cloud.uri, [
        (f"{pool}-{m}", now - 6 + i, 80.0, 0, 0, 0, 0, 0) for i in range(7) for m in (1, 2)])
    scaler = Autoscaler(test_cloud.ipools, lambda: test_cloud.monitor)
    assert scaler.evaluate(pool, now) == Decision("out", 3, "cpu>50% for 5s (mean 80.0)")
    # the pool changed size just now: older samples no longer count
    record = test_cloud.inventory.resources(test_cloud.uri, "ipool")
    spec = next(r.spec for r in record if r.name == pool)
    test_cloud.inventory.put(test_cloud.uri, "ipool", pool, state="active",
                             spec={**spec, "resized": now - 2})
    assert scaler.evaluate(pool, now).action == "hold"
    scaler._log_hold(pool, scaler.evaluate(pool, now))
    scaler._log_hold(pool, scaler.evaluate(pool, now))
    logged = [op for op in test_cloud.inventory.operations(50)
              if op["verb"] == "autoscale" and op["name"] == pool]
    assert len(logged) == 1 and "no rule holds" in logged[0]["detail"]
    test_cloud.inventory.remove(test_cloud.uri, "ipool", pool)


def test_a_pool_being_made_or_deleted_is_not_scaled_by_an_autoscaler(test_cloud, unique):
    """A pool's record exists, empty, while its `create` makes the members (maybe in
    another process): an autoscaler (the host agent's) must not see it below --min and
    make a member of the same name beside the create's. Nor while a delete empties it."""
    pool = unique("lbp")
    policy = Policy.parse("cpu>50% for 5s", None, 1, 3)
    scaler = Autoscaler(test_cloud.ipools, lambda: test_cloud.monitor)
    for state in ("creating", "deleting"):
        test_cloud.inventory.put(test_cloud.uri, "ipool", pool, state=state,
                                 spec={"members": [], "lb": None, "resized": 0.0,
                                       "policy": policy.to_json(),
                                       "template": {"image": "tiny", "flavor": "t.nano",
                                                    "network": "default"}})
        assert scaler.evaluate(pool).action == "out"     # what it would do if it looked
        assert scaler.step() == [] and not scaler.busy, state
        assert not test_cloud.ipools.claim_resize(pool, 0.0), state
    test_cloud.inventory.set_state(test_cloud.uri, "ipool", pool, "active")
    assert test_cloud.ipools.claim_resize(pool, 0.0)     # an active one can be claimed
    test_cloud.inventory.remove(test_cloud.uri, "ipool", pool)


def test_bad_pool_input_changes_nothing(test_cloud, web, unique):
    base, _names, _other = web
    test_cloud.lbs.create(f"{base}-lb", "default", 80)
    net = unique("lbn")
    test_cloud.networks.create(net, f"10.{150 + int(net[3:]) % 90}.0.0/24", "isolated")
    ops = len(test_cloud.inventory.operations(1000))
    for line, message in (
            (f"ipool create {base}p --size 2 --min 3 --max 1", "more than --max"),
            (f"ipool create {base}p --scale-out 'cpu>>1 for 1m'", "is not a rule"),
            (f"ipool create {base}p --size 0", "is not allowed"),
            (f"ipool create {base}p --size 3 --min 1 --max 2", "outside --min"),
            (f"ipool create {base}p --flavor x.huge", "does not exist"),
            (f"ipool create {base}p --lb nolb", "does not exist"),
            (f"ipool create {base}p --network nonet", "does not exist"),
            (f"ipool create {base}p --network {net} --lb {base}-lb", "put them on one"),
            ("ipool scale nopool 2", "does not exist")):
        with pytest.raises((CloudError, InvalidSpec, LookupError)) as err:
            _run(test_cloud, line)
        assert message in str(err.value), line
    assert len(test_cloud.inventory.operations(1000)) == ops
    assert test_cloud.inventory.resources(test_cloud.uri, "ipool") == []
    test_cloud.lbs.delete(f"{base}-lb")
    test_cloud.networks.delete(net)


# ----- stacks ---------------------------------------------------------------------------------
def test_stack_loadbalancer_section_plans_create_and_member_changes(test_cloud, web):
    base, names, _other = web
    body = f"""
loadbalancer:
  {base}-lb: {{network: default, port: 8080, members: ["{base}-*"], member_port: 80}}
"""
    stack = parse(body, name="lbs")
    assert stack.loadbalancers[f"{base}-lb"].members == (f"{base}-*",)
    plan = compute(stack, test_cloud.inventory.resources(test_cloud.uri), read_live(test_cloud.services))
    assert [(a.op, a.kind) for a in plan.actions] == [("create", "loadbalancer")]
    test_cloud.stacks.apply("lbs", body)
    lb = test_cloud.lbs.get(f"{base}-lb")
    assert lb.members == names and test_cloud.inventory.resources(
        test_cloud.uri, "loadbalancer")[0].stack == "lbs"
    assert not test_cloud.stacks.plan("lbs", body)          # converged
    fewer = body.replace(f'"{base}-*"', f'"{base}-1"')
    plan = test_cloud.stacks.plan("lbs", fewer)
    assert [a.op for a in plan.actions] == ["update"] and "members" in plan.actions[0].line()
    test_cloud.stacks.apply("lbs", fewer)
    assert lb.members == [f"{base}-1"]
    test_cloud.stacks.destroy("lbs")
    assert test_cloud.inventory.resources(test_cloud.uri, "loadbalancer") == []


def test_stack_loadbalancer_mistakes_are_one_line(test_cloud, web):
    _base, _names, other = web
    for body, message in (
            ("loadbalancer:\n  x: {port: 80}", "network is missing"),
            ("loadbalancer:\n  x: {network: default, port: 70000}", "1 to 65535"),
            ("loadbalancer:\n  x: {network: default, algorithm: random}", "not offered"),
            ("loadbalancer:\n  x: {network: default, members: ['A B']}", "patterns like"),
            ("loadbalancer:\n  x: {network: default, color: red}", "is unknown")):
        with pytest.raises(InvalidSpec, match=message):
            parse(body, name="lbs")
    body = f"loadbalancer:\n  x: {{network: default, members: [{other}]}}"
    with pytest.raises(InvalidSpec, match="names no instance on network 'default'"):
        test_cloud.stacks.apply("lbs", body)
    assert test_cloud.inventory.resources(test_cloud.uri, "loadbalancer") == []


def test_lb_duplicate_name_is_refused(test_cloud, web):
    base, _names, _other = web
    test_cloud.lbs.create(f"{base}-lb", "default", 80)
    with pytest.raises(AlreadyExists):
        test_cloud.lbs.create(f"{base}-lb", "default", 81)
    test_cloud.lbs.delete(f"{base}-lb")


def test_failover_record_input_is_checked(test_cloud):
    for kwargs, message in ((dict(failover="192.168.122.5"), "at least two"),
                            (dict(failover="192.168.122.5,10.0.0.1"), "not an address on network"),
                            (dict(failover="192.168.122.5,192.168.122.6", port=0),
                             "1 to 65535"),
                            (dict(failover="192.168.122.5,x"), "not an IPv4 address"),
                            (dict(ip="192.168.122.5", failover="192.168.122.5,192.168.122.6"),
                             "one of them")):
        with pytest.raises(InvalidSpec, match=message):
            test_cloud.dns.add("default", "fo", **kwargs)
    assert test_cloud.dns.records("default") == []


# ----- DNS records only on the network, never over an instance's name -----------------------
def test_an_a_record_points_into_its_network_only(test_cloud, unique):
    net = unique("dnr")
    test_cloud.networks.create(net, f"10.{150 + int(net[3:]) % 90}.1.0/24", "isolated")
    info = test_cloud.provider.network(net)
    try:
        for ip in ("8.8.8.8", "127.0.0.1", "192.0.2.10", str(info.network.network_address),
                   str(info.network.broadcast_address)):
            with pytest.raises(InvalidSpec, match="not an address on network") as err:
                test_cloud.dns.add(net, "www", ip)
            assert "\n" not in str(err.value)
        assert test_cloud.dns.records(net) == [] and info.dns_hosts == ()
        test_cloud.dns.add(net, "gw", info.gateway)        # the balancers' address: fine
        assert dict(test_cloud.provider.network(net).dns_hosts) == {info.gateway: ("gw",)}
    finally:
        for r in test_cloud.dns.records(net):
            test_cloud.dns.delete(net, r.name)
        test_cloud.networks.delete(net)


def test_a_record_name_cannot_be_taken_by_a_new_instance(test_cloud, unique):
    """A name a record holds (squatted before the instance existed) refuses the instance's
    address reservation, instead of splitting the name between the two."""
    net = unique("dns")
    test_cloud.networks.create(net, f"10.{150 + int(net[3:]) % 90}.2.0/24", "isolated")
    info = test_cloud.provider.network(net)
    try:
        test_cloud.dns.add(net, "web-9", str(info.network.network_address + 200))
        with pytest.raises(AlreadyExists, match="DNS") as err:
            test_cloud.provider.reserve_address(net, "52:54:00:aa:bb:01", "web-9")
        assert "\n" not in str(err.value) and "web-9" in str(err.value)
        assert test_cloud.provider.network(net).hosts == ()     # no reservation made
    finally:
        for r in test_cloud.dns.records(net):
            test_cloud.dns.delete(net, r.name)
        test_cloud.networks.delete(net)
