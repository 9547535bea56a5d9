"""Custom instance types (`--vcpus N --memory M`, as GCE's custom machine types): the magic,
the API, the stack YAML and the create form reach them; their size is checked against the
host (test:///default says it has 16 CPUs and 3 GiB)."""
from __future__ import annotations

import shlex

import pytest
from IPython.core.error import UsageError

from nbcloud.core.flavors import choose, custom_flavor, get_flavor
from nbcloud.core.spec import InvalidSpec
from nbcloud.core.stackfile import parse
from nbcloud.ui import commands

M = 1 << 20


def test_a_custom_flavor_is_named_like_a_gce_custom_machine_type():
    flavor = custom_flavor(2, "1G")
    assert (flavor.name, flavor.vcpus, flavor.memory, flavor.cpu_share) == \
        ("custom-2-1024", 2, 1024 * M, 1.0)
    assert get_flavor("custom-2-1024") == flavor        # the name alone is enough
    assert choose(None, "2", "1G") == "custom-2-1024"
    assert choose(None) == "t.nano" and choose("m.small") == "m.small"
    assert choose("m1.small") == "m1.small"       # a cloud's own flavor: its to check


@pytest.mark.parametrize("flavor,vcpus,memory,words", [
    ("m.nano", 2, "1G", "either a flavor or --vcpus/--memory"),
    (None, 2, None, "needs both --vcpus and --memory"),
    (None, 0, "1G", "vcpus 0 is not allowed"),
    (None, 65, "1G", "from 1 to 64"),
    (None, 1, "32M", "too small"),
    (None, 1, "100000K", "whole number of MiB"),
    (None, 1, "lots", "is not a size"),
])
def test_bad_custom_sizes_are_one_line(flavor, vcpus, memory, words):
    with pytest.raises(InvalidSpec, match=words):
        choose(flavor, vcpus, memory)


def test_the_magic_accepts_vcpus_and_memory(ip):
    # past the grammar and the flavor: the test driver has no tiny image to boot
    with pytest.raises(UsageError, match="image 'tiny' does not exist"):
        ip.run_line_magic("cloud", "instance create cf-web --vcpus 2 --memory 1G --no-wait")
    args = commands.parse(shlex.split("instance create cf-web --vcpus 2 --memory 1G"))
    assert (args.vcpus, args.memory, args.flavor) == ("2", "1G", None)


@pytest.mark.parametrize("line,words", [
    ("instance create cf-web --vcpus 17 --memory 1G", "more than this host has: use at most 16"),
    ("instance create cf-web --vcpus 2 --memory 4G", "use at most 3072M"),
    ("instance create cf-web --flavor t.nano --vcpus 2 --memory 1G", "not both"),
    ("instance create cf-web --vcpus 2", "needs both"),
    ("instance resize cf-web", "give --flavor F, or --vcpus N --memory M"),
])
def test_custom_sizes_beyond_the_host_are_refused_in_one_line(ip, line, words):
    from nbcloud import _magics
    ops = len(_magics.api.inventory.operations(1000))
    with pytest.raises(UsageError, match=words) as err:
        ip.run_line_magic("cloud", line)
    assert "\n" not in str(err.value)
    assert len(_magics.api.inventory.operations(1000)) == ops    # nothing was begun


def test_the_api_refuses_a_custom_flavor_larger_than_the_host(test_cloud):
    with pytest.raises(InvalidSpec, match="more than this host has"):
        test_cloud.instances.create("cf-api", vcpus=64, memory="1G", wait=False)
    assert not test_cloud.provider.exists("cf-api")


def test_the_stack_yaml_takes_vcpus_and_memory_instead_of_a_flavor():
    stack = parse("instance:\n  web: {vcpus: 2, memory: 512M, count: 2}\n"
                  "ipool:\n  api: {vcpus: 1, memory: '{mem}'}\n", {"mem": "256M"}, "s")
    spec, _decl = stack.members()["web-2"]
    assert spec.flavor == "custom-2-512"
    assert stack.ipools["api"].flavor == "custom-1-256"
    with pytest.raises(InvalidSpec, match=r"instance.web: give either a flavor or "
                                          r"vcpus/memory"):
        parse("instance:\n  web: {flavor: t.nano, vcpus: 2, memory: 1G}\n", {}, "s")
    with pytest.raises(InvalidSpec, match="instance.web: a custom instance type needs both"):
        parse("instance:\n  web: {vcpus: 2}\n", {}, "s")


def test_the_form_offers_a_custom_type_and_shows_its_line(test_cloud):
    from nbcloud.ui.widgets.form import CUSTOM, CreateForm
    form = CreateForm(test_cloud)
    assert CUSTOM in form.flavor.options
    assert form.vcpus.layout.display == "none"            # shown only for `custom`
    form.name.value = "cf-form"
    form.flavor.value = CUSTOM
    assert form.vcpus.layout.display is None and form.memory.layout.display is None
    form.vcpus.value = 2
    form.memory.value = "1G"
    assert form.magic == "%cloud instance create cf-form --vcpus 2 --memory 1G"
    assert not form.button.disabled
    args = commands.parse(shlex.split(form.magic)[1:])
    assert (args.vcpus, args.memory) == ("2", "1G")
    form.memory.value = "64G"                              # more than the host has
    assert form.button.disabled and "use at most 3072M" in form.line.value
