import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbcloud.core.errors import InvalidSpec
from nbcloud.core.flavors import CATALOGUE, custom_flavor, get_flavor
from nbcloud.core.spec import (
    NAME_RE,
    InstanceSpec,
    NetworkSpec,
    check_count,
    check_name,
    format_size,
    parse_cidr,
    parse_size,
)

BAD_NAMES = ["x;rm -rf /", "../etc", "<b>", "", "Web", "1web", "a" * 64, "web_1", "wéb",
             "web\n", " web"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_get_one_line_error(name):
    with pytest.raises(InvalidSpec) as err:
        check_name(name, "instance name")
    msg = str(err.value)
    assert "\n" not in msg and "instance name" in msg and "lower-case letters" in msg


@given(st.text(max_size=80))
def test_names_accepted_iff_allow_list(text):
    ok = NAME_RE.fullmatch(text) is not None
    try:
        check_name(text)
        accepted = True
    except InvalidSpec:
        accepted = False
    assert accepted == ok
    if accepted:
        assert not set(text) & set("/;<>&$ .\\\n\"'`")


@pytest.mark.parametrize("text,value", [("512M", 512 << 20), ("2G", 2 << 30), ("1024", 1024),
                                        ("1GiB", 1 << 30), ("4k", 4096)])
def test_sizes(text, value):
    assert parse_size(text) == value
    assert parse_size(format_size(value)) == value


@pytest.mark.parametrize("text", ["0", "-1G", "1.5G", "G", "12X", "", None, True])
def test_bad_sizes(text):
    with pytest.raises(InvalidSpec, match="size"):
        parse_size(text)


def test_cidrs():
    assert str(parse_cidr("10.80.0.0/24").netmask) == "255.255.255.0"
    for bad in ["10.80.0.1/24", "10.80.0.0/31", "300.1.1.0/24", "lab"]:
        with pytest.raises(InvalidSpec, match="cidr"):
            parse_cidr(bad)


def test_counts():
    assert check_count("3") == 3
    for bad in ["0", "-1", "x", "2.5", 65, True]:
        with pytest.raises(InvalidSpec, match="count"):
            check_count(bad)


def test_instance_spec_checks_every_name():
    InstanceSpec("web", networks=("lab",))
    with pytest.raises(InvalidSpec, match="network name"):
        InstanceSpec("web", networks=("../x",))
    with pytest.raises(InvalidSpec, match="image name"):
        InstanceSpec("web", image="a b")
    with pytest.raises(InvalidSpec, match="mode"):
        NetworkSpec("lab", "10.0.0.0/24", mode="bridge")


def test_user_data_kinds():
    InstanceSpec("web", user_data="#!/bin/sh\necho hi\n")
    InstanceSpec("web", user_data="#cloud-config\nruncmd: [ls]\n")
    with pytest.raises(InvalidSpec, match="user-data must start"):
        InstanceSpec("web", user_data="echo hi")


def test_flavor_catalogue_families():
    families = {f.family for f in CATALOGUE.values()}
    assert families == {"shared", "standard", "highcpu", "highmem", "storage"}
    assert all(f.cpu_share < 1 for f in CATALOGUE.values() if f.name.startswith("t."))
    assert all(f.local_disk > 0 for f in CATALOGUE.values() if f.name.startswith("d."))
    # high-CPU has more vCPUs per GiB than standard, high-memory fewer, size for size
    for size in ("small", "large"):
        per_gib = {p: CATALOGUE[f"{p}.{size}"].vcpus / CATALOGUE[f"{p}.{size}"].memory
                   for p in "mcr"}
        assert per_gib["c"] > per_gib["m"] > per_gib["r"]
    assert get_flavor("t.nano").memory == 128 << 20
    with pytest.raises(InvalidSpec, match="does not exist"):
        get_flavor("t.huge")
    assert custom_flavor("2", "1G").vcpus == 2
    with pytest.raises(InvalidSpec, match="too small"):
        custom_flavor(1, "1M")
