"""Edge validation the reliability suite asked for: user-data size, YAML nesting and
non-text, control characters in unknown keys, paths with '..' for key and user-data
files. (The reliability tier runs the same through the real daemon, at scale.)"""
from __future__ import annotations

import ipaddress

import pytest
from IPython.core.error import UsageError

from nbcloud.core import cloudinit
from nbcloud.core import stackfile as stack
from nbcloud.core.spec import USER_DATA_MAX, InstanceSpec, InvalidSpec


def test_user_data_over_the_limit_is_refused_by_the_spec():
    InstanceSpec("web", user_data="#!/bin/sh\n" + "x" * (USER_DATA_MAX - 10))
    with pytest.raises(InvalidSpec, match=f"at most {USER_DATA_MAX}"):
        InstanceSpec("web", user_data="#!/bin/sh\n" + "x" * (USER_DATA_MAX - 9))
    with pytest.raises(InvalidSpec, match="not valid text"):
        InstanceSpec("web", user_data="#!/bin/sh\n\ud800")


def test_user_data_with_leading_blank_lines_builds_a_seed():
    # the spec accepts it (a triple-quoted string starts with a newline): so must the seed
    doc = cloudinit.user_data_document("#cloud-config\n{}\n", "\n  #!/bin/sh\necho hi\n")
    assert 'filename="user-data"' in doc and "x-shellscript" in doc


@pytest.mark.parametrize("text, words", [
    ("[" * 200 + "]" * 200, "levels deep"),
    ("instance:\n  web: " + "{a: " * 100 + "1" + "}" * 100, "levels deep"),
    ("instance:\n  web: {image: \ud800}\n", "surrogate"),
    ("instance:\n  web: {\"im\\x1bage\": tiny}\n", "'im\\x1bage' is unknown"),
])
def test_hostile_yaml_is_one_printable_line(text, words):
    with pytest.raises(InvalidSpec) as err:
        stack.parse(text)
    assert words in str(err.value)
    assert str(err.value).isprintable()


def test_a_deep_but_legal_stack_still_parses():
    s = stack.parse("instance:\n  web: {network: [nbcloud], count: 2}\n")
    assert [m.name for m, _ in s.members().values()] == ["web-1", "web-2"]


@pytest.mark.parametrize("line", [
    "key import k1 ../../etc/ssh/ssh_host_ed25519_key.pub",
    "instance create web --user-data ../../etc/shadow",
])
def test_paths_with_dot_dot_are_refused(ip, line):
    with pytest.raises(UsageError, match="without '..'"):
        ip.run_line_magic("cloud", line)


def test_user_data_file_over_the_limit_is_not_read(ip, tmp_path):
    big = tmp_path / "big.sh"
    big.write_bytes(b"#!/bin/sh\n" + b"#" * (USER_DATA_MAX + 1))
    with pytest.raises(UsageError, match=f"at most {USER_DATA_MAX}"):
        ip.run_line_magic("cloud", f"instance create web --user-data {big}")



def test_stale_leases_do_not_exhaust_the_reserved_addresses():
    """A deleted instance's DHCP lease lives on in dnsmasq for an hour; its address must
    not stay unusable that long (the soak's create/delete loop ran out of addresses)."""
    from nbcloud.providers.libvirt import xml as lx
    from nbcloud.providers.libvirt.provider import LibvirtProvider
    info = lx.parse_network(lx.network_xml("rlnet", "10.123.45.0/28", "isolated", "virbr-rl"))
    start = ipaddress.IPv4Address(info.dhcp_start)
    lower = [str(a) for a in info.network.hosts() if str(a) != info.gateway and a < start]
    assert len(lower) >= 4
    taken, reserved = {info.gateway, lower[0]}, {"52:54:00:00:00:01"}
    fresh = [{"ipaddr": lower[1], "mac": "52:54:00:aa:00:01"}]
    # a free, never-leased address comes first
    assert LibvirtProvider._pick_address(info, taken, fresh, reserved) == lower[2]
    # every other address leased to MACs without a reservation (gone): one of those
    stale = [{"ipaddr": ip, "mac": f"52:54:00:aa:00:{i:02x}"} for i, ip in enumerate(lower)]
    assert LibvirtProvider._pick_address(info, taken, stale, reserved) == lower[1]
    # leased to a MAC that still has a reservation: never
    held = [{"ipaddr": ip, "mac": "52:54:00:00:00:01"} for ip in lower]
    with pytest.raises(Exception, match="no free address"):
        LibvirtProvider._pick_address(info, taken, held, reserved)
