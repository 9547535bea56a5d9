"""The design palette's model and widgets: the YAML it produces (parsed back by stack.py),
its refusals, its drawing, clicks, and `%cloud design`."""
from __future__ import annotations

import pytest

from nbcloud.core import stackfile as stack_model
from nbcloud.core.spec import InvalidSpec
from nbcloud.ui.design import DesignPalette
from nbcloud.workflows.design import Design


def _web_design() -> Design:
    d = Design()
    d.add("server", "web", flavor="m.nano")
    d.connect("web", "internet")               # adds the Internet item on the way
    d.add("SSD Storage", "data", size="2G")
    d.connect("data", "web")
    d.add("composite", "app", count=3)
    d.connect("app", "internet")
    d.add("hdd", "cold")
    return d


def test_yaml_is_the_stack_of_the_design():
    d = _web_design()
    assert d.yaml() == (
        "network:\n"
        "  internet: {cidr: 10.90.0.0/24, mode: nat}\n"
        "volume:\n"
        "  data: {size: 2G, tier: ssd}\n"
        "  cold: {size: 1G, tier: hdd}\n"
        "instance:\n"
        "  web: {image: tiny, flavor: m.nano, network: [internet], volume: [data]}\n"
        "  app: {image: tiny, flavor: t.nano, network: [internet], count: 3}\n")
    st = stack_model.parse(d.yaml(), {}, "tp-s")
    assert st.networks["internet"].mode == "nat"
    assert st.networks["internet"].cidr == "10.90.0.0/24"
    assert (st.volumes["data"].tier, st.volumes["cold"].tier) == ("ssd", "hdd")
    assert st.instances["web"].volumes == ("data",)
    assert st.instances["web"].networks == ("internet",)
    assert sorted(st.members()) == ["app-1", "app-2", "app-3", "web"]
    assert d.stack("tp-s") == st
    assert d.cell("tp-s").startswith("%%cloud apply --stack tp-s\nnetwork:\n")


def test_a_second_internet_gets_the_next_free_cidr_and_a_given_one_is_kept():
    d = _web_design()
    assert d.add("internet", "dmz").props["cidr"] == "10.90.1.0/24"
    assert d.add("internet", "lab", cidr="10.213.40.0/24").props["cidr"] == "10.213.40.0/24"
    with pytest.raises(InvalidSpec, match="cidr '10.1.2.3/24' is not allowed"):
        d.add("internet", "bad", cidr="10.1.2.3/24")


def test_a_server_with_no_connection_uses_the_default_network():
    d = Design()
    d.add("server", "solo")
    st = stack_model.parse(d.yaml(), {}, "tp-s")
    assert st.instances["solo"].networks == ("nbcloud",)


def test_load_balancer_section_only_when_the_design_has_one(monkeypatch):
    d = _web_design()
    assert "loadbalancer" not in d.yaml()
    d.add("lb", "front", port=8080)
    d.connect("front", "app")
    d.connect("front", "web")
    assert d.sections()["loadbalancer"] == {
        "front": {"network": "internet", "port": 8080,
                  "members": ["app-1", "app-2", "app-3", "web"]}}
    assert "  front: {network: internet, port: 8080, members: [app-1, app-2, app-3, web]}" \
        in d.yaml()
    if "loadbalancer" in stack_model.SECTIONS:   # stack.py takes it: it parses back
        lb = d.stack("tp-s").loadbalancers["front"]
        assert (lb.network, lb.port, lb.members) == ("internet", 8080,
                                                     ("app-1", "app-2", "app-3", "web"))
    # a stack.py without the section: a clear refusal, before anything is applied
    monkeypatch.setattr(stack_model, "SECTIONS", ("network", "volume", "instance"))
    with pytest.raises(InvalidSpec, match="no loadbalancer: section yet"):
        d.stack()
    monkeypatch.undo()
    d.remove("front")
    assert "loadbalancer" not in d.yaml() and d.stack().instances


def test_load_balancer_members_must_share_its_network():
    d = Design()
    d.add("server", "a")
    d.add("internet", "net1")
    d.connect("a", "net1")
    d.add("lb", "lb")
    d.connect("lb", "a")
    assert d.sections()["loadbalancer"]["lb"]["network"] == "net1"
    d.add("server", "b")                      # on the default network only
    d.connect("lb", "b")
    with pytest.raises(InvalidSpec, match="members of load balancer lb share no network"):
        d.yaml()
    d.connect("lb", "net1")                   # now it is on net1, and b is not
    with pytest.raises(InvalidSpec, match="lb is on network net1 and b is not"):
        d.yaml()
    d.connect("b", "net1")
    assert d.sections()["loadbalancer"]["lb"]["members"] == ["a", "b"]


def test_cdroms_become_the_magic_lines_to_run():
    d = Design()
    d.add("server", "web")
    d.add("cd-rom", "docs", folder="/srv/docs")
    d.connect("docs", "web")
    text = d.yaml()
    assert "#   %cloud cdrom create docs --from /srv/docs\n" in text
    assert "#   %cloud cdrom attach docs web\n" in text
    assert set(stack_model.parse(text, {}, "tp-s").instances) == {"web"}


@pytest.mark.parametrize("steps, message", [
    ([("add", "router", "r")], "'router' is not on the palette"),
    ([("add", "server", "Web")], "Server name 'Web' is not allowed"),
    ([("add", "server", "w"), ("add", "ssd", "w")], "has an item called 'w' already"),
    ([("add", "hdd", "v", {"size": "lots"})], "size"),
    ([("add", "server", "w", {"count": 2})], "Server has no 'count'"),
    ([("add", "composite", "c", {"count": 0})], "count"),
    ([("add", "lb", "l", {"port": 70000})], "port 70000 is not allowed"),
    ([("add", "ssd", "a"), ("add", "hdd", "b"), ("connect", "a", "b")],
     "SSD Storage cannot be connected to a HDD Storage"),
    ([("add", "server", "w"), ("connect", "w", "nothing")], "no item called 'nothing'"),
    ([("add", "server", "w"), ("add", "server", "x"), ("add", "ssd", "v"),
      ("connect", "v", "w"), ("connect", "v", "x")], "v is connected to w already"),
    ([("add", "composite", "c"), ("add", "ssd", "v"), ("connect", "c", "v")],
     "v attaches to one instance, and c is 2"),
])
def test_refusals_are_one_line_and_change_nothing(steps, message):
    d = Design()
    *setup, last = steps
    for op, *args in setup:
        getattr(d, op)(*args[:2], **(args[2] if len(args) > 2 else {}))
    before = (dict(d.items), list(d.links))
    op, *args = last
    with pytest.raises(InvalidSpec, match=message) as err:
        getattr(d, op)(*args[:2], **(args[2] if len(args) > 2 else {}))
    assert "\n" not in str(err.value)
    assert (dict(d.items), list(d.links)) == before


def test_a_refused_connect_to_internet_leaves_no_internet_behind():
    d = Design()
    d.add("ssd", "v")
    with pytest.raises(InvalidSpec):
        d.connect("v", "internet")
    assert list(d.items) == ["v"]


def test_the_drawing_is_the_topology_figure_of_the_design():
    p = DesignPalette(None, "tp-s", widget=False)
    p.add("server", "web")
    p.add("composite", "app", count=2)
    p.add("ssd", "data")
    p.connect("web", "data")
    p.connect("app", "internet")
    by_kind = {t.meta: t for t in p.figure.data[1:]}
    assert list(by_kind["instance"].text) == ["app ×2", "web"]
    assert list(by_kind["volume"].text) == ["data"]
    assert list(by_kind["network"].text) == ["internet"]
    assert "tier: ssd" in by_kind["volume"].hovertext[0]
    assert list(p.figure.data[0].x).count(None) == 2   # two connections
    xs = {t.meta: list(t.x) for t in p.figure.data[1:] if len(t.x)}
    p.add("server", "aaa")                            # the others stay where they were
    after = {t.meta: list(t.x) for t in p.figure.data[1:] if len(t.x)}
    assert after["volume"] == xs["volume"] and after["network"] == xs["network"]
    inst = next(t for t in p.figure.data if t.meta == "instance")
    assert dict(zip(inst.text, inst.y))["aaa"] == -2.0


def test_clicks_drive_the_same_model():
    p = DesignPalette(None, "tp-s", widget=True)
    ui = p.widget and p._ui
    ui["name"].value = "web"
    ui["add"].click()
    ui["kind"].value = "hdd"
    ui["name"].value = "logs"
    ui["add"].click()
    ui["a"].value, ui["b"].value = "web", "logs"
    ui["connect"].click()
    assert p.design.sections()["instance"]["web"]["volume"] == ["logs"]
    assert "web: {image: tiny, flavor: t.nano, volume: [logs]}" in ui["yaml"].value
    assert type(p.figure).__name__ == "FigureWidget"
    ui["kind"].value = "composite"
    ui["count"].value = 4
    ui["name"].value = "pool"
    ui["add"].click()
    assert p.design.items["pool"].count == 4
    ui["name"].value = "Bad Name"
    ui["add"].click()                                 # shown in place, not raised
    assert "Bad Name" not in p.design.items and not ui["add"].disabled
    ui["a"].value = "pool"
    ui["remove"].click()
    assert list(p.design.items) == ["web", "logs"]
    # half-wired (a balancer whose members share no network): said in the YAML box
    p.add("internet", "net1")
    p.add("server", "api")
    p.connect("api", "net1")
    p.add("lb", "front")
    p.connect("front", "web")
    p.connect("front", "api")
    assert "# not a stack yet: the members of load balancer front share no network" \
        in ui["yaml"].value
    assert "not a stack yet" in repr(p)
    p.connect("web", "net1")
    assert "front: {network: net1, port: 80, members: [web, api]}" in ui["yaml"].value


def test_magic_design_returns_a_drivable_palette(ip):
    d = ip.run_line_magic("cloud", "design --stack tp-mag")
    assert isinstance(d, DesignPalette) and d.stack == "tp-mag"
    d.add("server", "web")
    d.connect("web", "internet")
    assert d.cell().splitlines()[0] == "%%cloud apply --stack tp-mag"
    # the palette's cloud is the magic's: the CIDR avoids test:///default's networks
    assert stack_model.parse(d.yaml(), {}, "tp-mag").networks["internet"].cidr \
        == d.design.items["internet"].props["cidr"]
