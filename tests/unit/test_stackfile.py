"""Parsing a `%%cloud` cell body: sections, fields, types, names, interpolation, and
hostile YAML (alias bombs, unknown keys, '..' in names), each refused in one line."""
from __future__ import annotations

import pytest

from nbcloud.core.spec import InvalidSpec
from nbcloud.core.stackfile import parse

BODY = """
network:
  lab: {cidr: 10.80.0.0/24, mode: nat}
volume:
  data: {size: 2G, tier: ssd}
instance:
  web: {image: tiny, flavor: t.nano, network: [lab], count: 2}
  db: {flavor: m.nano, network: lab, volume: [data]}
"""


def _refused(text, namespace=None, match=None):
    with pytest.raises(InvalidSpec, match=match) as err:
        parse(text, namespace, "s")
    assert "\n" not in str(err.value)
    return str(err.value)


def test_design_example_parses_into_specs():
    stack = parse(BODY, {}, "lab")
    assert stack.networks["lab"].cidr == "10.80.0.0/24"
    assert stack.volumes["data"].capacity == 2 << 30
    assert list(stack.members()) == ["web-1", "web-2", "db"]
    db_spec, db_decl = stack.members()["db"]
    assert (db_spec.flavor, db_spec.networks, db_decl.volumes) == ("m.nano", ("lab",),
                                                                    ("data",))


def test_empty_body_is_an_empty_stack():
    stack = parse("", {}, "s")
    assert (stack.networks, stack.volumes, stack.instances) == ({}, {}, {})


def test_interpolation_from_the_namespace_keeps_types():
    stack = parse("instance:\n  web: {flavor: '{f}', count: {n}, network: {nets}}\n",
                  {"f": "m.nano", "n": 3, "nets": ["a", "b"]}, "s")
    spec, decl = stack.members()["web-3"]
    assert (spec.flavor, spec.networks, decl.count) == ("m.nano", ("a", "b"), 3)


def test_interpolated_value_cannot_change_the_structure():
    evil = "t.nano}\ninstance:\n  x: {image: other"
    msg = _refused("instance:\n  web: {flavor: {f}}\n", {"f": evil}, "flavor")
    assert "not a flavor name" in msg


def test_missing_variable_is_one_line():
    assert "names no variable" in _refused("volume:\n  d: {size: {sz}}\n", {})


@pytest.mark.parametrize("text, words", [
    ("nets:\n  a: {cidr: 10.0.0.0/24}\n", "section 'nets' is unknown"),
    ("network:\n  a: {cidr: 10.0.0.0/24, colour: red}\n", "network.a.colour is unknown"),
    ("network:\n  a: {mode: nat}\n", "network.a.cidr is missing"),
    ("volume:\n  d: {size: [1, 2]}\n", "volume.d.size is list"),
    ("instance:\n  w: {count: two}\n", "instance.w.count is str"),
    ("instance:\n  w: {count: true}\n", "instance.w.count is bool"),
    ("instance:\n  w: {count: 0}\n", "count 0 is not allowed"),
    ("instance:\n  w: {network: [1]}\n", "instance.w.network holds 1"),
    ("instance:\n  w: {volume: [nope]}\n", "not in the volume: section"),
    ("network:\n  a: {cidr: 10.0.0.1/24}\n", "not an IPv4 network"),
    ("volume:\n  d: {size: 1G, tier: tape}\n", "tier 'tape'"),
    ("instance:\n  ../etc: {}\n", "instance name '../etc' is not allowed"),
    ("instance:\n  w: {image: ../../x}\n", "image name"),
    ("- a\n- b\n", "must be a mapping"),
    ("network: [a, b]\n", "section network: must map"),
    ("instance:\n  w: {user_data: !!python/object:os.system ls}\n", "not valid YAML"),
    ("network: {a: [\n", "not valid YAML"),
    ("volume:\n  d: {size: 1G}\ninstance:\n  a: {volume: d}\n  b: {volume: d}\n",
     "attaches to one instance"),
    ("volume:\n  d: {size: 1G}\ninstance:\n  a: {volume: d, count: 2}\n", "use count 1"),
    ("instance:\n  w: {count: 2}\n  w-1: {}\n", "declared twice"),
])
def test_mistakes_are_one_line_naming_the_key(text, words):
    assert words in _refused(text)


def test_billion_laughs_is_refused_before_expansion():
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for level in "bcdefghi":
        bomb += f"{level}: &{level} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = level
    assert "anchors and aliases" in _refused(bomb)


def test_oversized_body_is_refused():
    assert "at most" in _refused("#" * 70_000)


def test_too_many_nodes_is_refused():
    assert "YAML nodes" in _refused("x: [" + ",".join(["1"] * 30_000) + "]\n")


def test_dict_source_is_accepted():
    stack = parse({"volume": {"d": {"size": "1G"}}}, None, "s")
    assert stack.volumes["d"].tier == "ssd"


def test_stack_name_is_checked():
    with pytest.raises(InvalidSpec, match="stack name"):
        parse("", {}, "../x")


@pytest.mark.parametrize("value", [["web", "db"], ("web",), []])
def test_a_list_variable_as_a_name_is_one_line(value):
    for text in ("instance:\n  {names}: {}\n", "{names}:\n  web: {}\n",
                 "instance:\n  web: {{names}: tiny}\n"):
        with pytest.raises(InvalidSpec) as err:
            parse(text, {"names": value})
        assert "\n" not in str(err.value) and "list" in str(err.value)
