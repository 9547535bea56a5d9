"""Hostile input: generated names against every name-taking verb, YAML bombs and junk,
user-data over the limit, paths with '..', control characters.

The rule checked everywhere: a user mistake is one printable line (IPython `UsageError`
from the magic, `InvalidSpec`/`CloudError` from the API), never a traceback; nothing is
made; and libvirt never hears an invalid name. The magic runs on a Cloud whose libvirt
connection is wrapped by `Spy`: it records every call, and refuses (before libvirt sees
it) any call that would change something.
"""
from __future__ import annotations

import argparse
import os
import shlex

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from nbcloud.core import stackfile as stack
from nbcloud.core.errors import CloudError
from nbcloud.core.spec import NAME_RE, USER_DATA_MAX, InvalidSpec
from nbcloud.ui import commands

# Words in a libvirt method name that change something (setAutostart, networkDefineXML,
# storageVolCreateXML, undefineFlags, update, upload, ...).
MUTATING = ("define", "create", "destroy", "delete", "update", "upload", "set", "attach",
            "detach", "shutdown", "reboot", "resume", "suspend", "revert", "build",
            "resize", "stream", "wipe", "save", "migrate", "send", "inject", "reset",
            "block", "pin")


class Spy:
    """A libvirt object (connection, domain, pool...) that records what is called on it
    and refuses changes; objects it returns are spied on too."""

    def __init__(self, target, calls: list):
        self._target, self._calls = target, calls

    def __getattr__(self, attr):
        value = getattr(self._target, attr)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            self._calls.append((attr, args))
            if any(word in attr.lower() for word in MUTATING):
                raise AssertionError(f"libvirt {attr} was called")
            return _wrap(value(*args, **kwargs), self._calls)
        return call


def _wrap(result, calls):
    if type(result).__module__ == "libvirt":
        return Spy(result, calls)
    if isinstance(result, list):
        return [_wrap(r, calls) for r in result]
    return result


@pytest.fixture(scope="module")
def spied(tmp_path_factory):
    """(magics, calls): the %cloud magic on a Cloud of its own, whose connection is spied."""
    from IPython.core.interactiveshell import InteractiveShell

    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    from nbcloud.ui.magics import CloudMagics
    cloud = Cloud(os.environ.get("NBCLOUD_TEST_URI", "qemu:///system"), inventory=Inventory(tmp_path_factory.mktemp("rl-hostile") / "i.sqlite"))
    calls: list = []
    real = cloud.provider.conn
    cloud.provider.conn = Spy(real, calls)
    magics = CloudMagics(shell=InteractiveShell.instance())
    magics._cloud = cloud
    # what an ordinary session asks libvirt, and the stand-ins the tests fill in
    for line in ("instance list", "network list", "volume list", "image list"):
        magics.cloud(line)
    _ORDINARY.update(text for call in calls for text in map(str, call[1]))
    _ORDINARY.update(str(v) for v in (*FILLERS.values(), *OPTIONS.values()) if v)
    del calls[:]
    yield magics, calls
    cloud.provider.conn = real
    magics._cloud = None
    cloud.close()


# ----- every verb that takes a name -----------------------------------------------------
NAME_SLOTS = {"name", "instance", "snapshot", "network", "names"}
FILLERS = {  # valid stand-ins for the other arguments: names that do not exist
    "name": "rl-ghost", "instance": "rl-ghost", "snapshot": "rl-ghost",
    "network": "rl-ghost", "names": "rl-ghost", "source": "/nonexistent-rl/disk.raw",
    "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA", "command": "-- true",
    "size": "2", "ip": None,
    "uri": "test:///default",      # host add: a daemon in this process, never dialled
}
OPTIONS = {"--from": "/nonexistent-rl/folder", "--port": "8080", "--flavor": "t.nano",
           "--network": "rl-ghost", "--cidr": "10.251.0.0/24",
           "--path": "/nonexistent-rl/pool", "--size": "1G", "--vcpus": "1",
           "--memory": "512M"}
# not names: a URI (connect would dial it), op ids, filters, sub-grammars
SKIP = {"connect", "recover", "ls", "design", "form", "lb member", "secgroup rule"}


def _leaves(parser) -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for group, gp in groups.choices.items():
        if group in commands.ALIASES:
            continue
        verbs = [a for a in gp._actions if isinstance(a, argparse._SubParsersAction)]
        if not verbs:
            out.append((group, gp))
        else:
            out += [(f"{group} {verb}", vp) for verb, vp in verbs[0].choices.items()]
    return out


def name_slots() -> tuple[list[tuple[str, list, int]], list[str]]:
    """(command, argv template, index of the name slot) for every positional name of
    every verb of the grammar (new verbs are picked up as they are added), and the
    arguments this test does not know how to fill."""
    out, unknown = [], []
    for command, parser in _leaves(commands.build_parser()):
        if command in SKIP:
            continue
        positionals = [a for a in parser._actions if not a.option_strings
                       and not isinstance(a, argparse._SubParsersAction)]
        required = [a.option_strings[0] for a in parser._actions
                    if a.option_strings and a.required]
        unknown += [f"{command} {a.dest}" for a in positionals
                    if a.dest not in FILLERS and a.nargs not in ("?", "*")]
        unknown += [f"{command} {o}" for o in required if o not in OPTIONS]
        for slot, action in enumerate(positionals):
            if action.dest not in NAME_SLOTS or action.choices is not None:
                continue
            argv = command.split()
            for i, other in enumerate(positionals):
                if i == slot:
                    index = len(argv)
                    argv.append(None)
                elif FILLERS.get(other.dest) is not None:
                    argv += shlex.split(FILLERS[other.dest])
            for opt in required:
                argv += [opt, OPTIONS.get(opt, "x")]
            out.append((command, argv, index))
    return out, unknown


SLOTS, UNKNOWN = name_slots()

invalid_names = st.one_of(
    st.text(max_size=80),                                   # anything, control chars too
    st.text(alphabet="abcXYZ019-_.:/ \\;$`'\"<>&|\n\t\x00\x1b", max_size=70),
    st.from_regex(r"[a-z][a-z0-9-]{63,80}", fullmatch=True),  # one too long
    st.from_regex(r"[0-9-][a-z0-9-]{0,20}", fullmatch=True),  # bad first character
    st.builds(lambda n, c: n + c, st.from_regex(r"[a-z]{1,10}", fullmatch=True),
              st.sampled_from(["\n", "\r", "\x00", "\x1b[31m", "\u202e", "\ud800", "/..",
                               " ", "A", "_", ".", "é"])),
).filter(lambda n: not NAME_RE.fullmatch(n))


#: what libvirt is asked when no name is hostile (a listing, the capabilities...): a
#: hostile name that is a substring of these tells nothing when found in a call
_ORDINARY: set[str] = set()


def heard(name: str, calls: list) -> list:
    """The calls whose arguments carry `name`, also inside a longer string (a path, an
    XML document, a filter), which comparing whole arguments would miss."""
    def strings(value):
        if isinstance(value, (str, bytes)):
            yield value if isinstance(value, str) else value.decode(errors="replace")
        elif isinstance(value, (list, tuple, dict)):
            for v in (value.values() if isinstance(value, dict) else value):
                yield from strings(v)
    if len(name) < 3 or any(name in text for text in _ORDINARY):
        return []
    return [c for c in calls if any(name in text for text in strings(c[1]))]


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert message.isprintable(), repr(message)


def test_every_name_slot_is_found():
    assert UNKNOWN == [], "teach FILLERS/OPTIONS these arguments"
    commands_with_names = {c for c, _, _ in SLOTS}
    assert {"instance create", "instance delete", "instance ssh", "volume attach",
            "network create", "pool create", "key import", "image import",
            "stack destroy"} <= commands_with_names
    assert len(SLOTS) >= 40


# No shrinking: against the daemon it can take minutes, and the suite is bounded in time
# (a failure shows the generated name as it came, which is small anyway).
@settings(max_examples=int(os.environ.get("RL_HOSTILE_EXAMPLES", "200")),
          deadline=None, database=None, report_multiple_bugs=False,
          phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(slot=st.sampled_from(SLOTS), name=invalid_names)
@example(slot=SLOTS[0], name="web\n")
@example(slot=SLOTS[0], name="../../etc/passwd")
@example(slot=SLOTS[0], name="a" * 64)
@example(slot=SLOTS[0], name="web\x1b[2J")
@example(slot=SLOTS[0], name="-rf")
def test_invalid_names_are_refused_in_one_line_before_libvirt(spied, recorder, slot, name):
    magics, calls = spied
    command, template, index = slot
    argv = list(template)
    argv[index] = name
    try:
        line = shlex.join(argv)
    except ValueError:
        return  # a NUL: no line can carry it
    ops = len(magics._cloud.inventory.operations(100000))
    del calls[:]
    recorder.hostile_input("names")
    with pytest.raises(UsageError) as err:
        magics.cloud(line)
    _one_line(str(err.value))
    mutations = [c for c in calls if any(w in c[0].lower() for w in MUTATING)]
    assert not mutations, f"{command}: {mutations}"
    assert not heard(name, calls), f"{command}: libvirt heard {name!r}"
    assert len(magics._cloud.inventory.operations(100000)) == ops


@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much])
@given(name=invalid_names)
def test_invalid_names_are_refused_by_the_api(spied, recorder, name):
    cloud = spied[0]._cloud
    calls = spied[1]
    del calls[:]
    api = [lambda: cloud.instances.create(name, wait=False),
           lambda: cloud.instances.get(name), lambda: cloud.instances.delete(name),
           lambda: cloud.volumes.create(name, "1G"), lambda: cloud.volumes.delete(name),
           lambda: cloud.volumes.attach("rl-ghost", name),
           lambda: cloud.networks.create(name, "10.251.0.0/24"),
           lambda: cloud.networks.delete(name), lambda: cloud.pools.create(name, "/tmp/x"),
           lambda: cloud.keys.create(name), lambda: cloud.images.get(name),
           lambda: cloud.import_image(name, "/nonexistent-rl/disk.raw"),
           lambda: cloud.stacks.destroy(name), lambda: cloud.stacks.plan(name, "")]
    for call in api:
        recorder.hostile_input("names")
        with pytest.raises((InvalidSpec, CloudError)) as err:
            call()
        _one_line(str(err.value))
    assert not [c for c in calls if any(w in c[0].lower() for w in MUTATING)], calls
    assert not heard(name, calls), f"libvirt heard {name!r}"


# ----- YAML stacks ----------------------------------------------------------------------
BOMB = ('a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        + "".join(f'{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n'
                  for p, c in zip("abcdefgh", "bcdefghi")))
HOSTILE_STACKS = {
    "billion laughs": BOMB,
    "anchor on a resource": "instance:\n  web: &w {image: tiny}\n  db: *w\n",
    "huge document": "instance:\n" + "".join(f"  vm{i}: {{image: tiny}}\n"
                                             for i in range(4000)),
    "many nodes": "instance:\n  web: {network: [" + ",".join(["n"] * 25000) + "]}\n",
    "deep nesting": "instance:\n  web: " + "[" * 3000 + "]" * 3000 + "\n",
    "deep mappings": "instance:\n  web: " + "{a: " * 500 + "1" + "}" * 500 + "\n",
    "wrong type: count": "instance:\n  web: {count: many}\n",
    "wrong type: bool count": "instance:\n  web: {count: true}\n",
    "wrong type: float count": "instance:\n  web: {count: 1.5}\n",
    "wrong type: huge count": "instance:\n  web: {count: 99999999999999999999999}\n",
    "wrong type: section list": "instance: [web, db]\n",
    "wrong type: fields list": "instance:\n  web: [tiny]\n",
    "wrong type: network map": "instance:\n  web: {network: {a: 1}}\n",
    "wrong type: binary": "instance:\n  web: {user_data: !!binary aGVsbG8=}\n",
    "wrong type: top list": "- instance\n- network\n",
    "python tag": "instance: !!python/object/apply:os.system ['true']\n",
    "unknown section": "instances:\n  web: {}\n",
    "unknown key": "instance:\n  web: {imag: tiny}\n",
    "unknown key with control chars": "instance:\n  web: {\"im\\x1bage\": tiny}\n",
    "bad resource name": "instance:\n  Web_1: {}\n",
    "name with newline": "instance:\n  \"web\\n\": {}\n",
    "non-string key": "instance:\n  1: {}\n",
    "unhashable key": "instance:\n  ? [a]\n  : {}\n",
    "null byte": "instance:\n  web: {}\x00\n",
    "lone surrogate": "instance:\n  web: {image: \ud800}\n",
    "tab indentation": "instance:\n\tweb: {}\n",
    "unterminated": "instance: {web: {image: tiny\n",
    "bad cidr": "network:\n  lab: {cidr: 10.0.0.1/33}\n",
    "missing cidr": "network:\n  lab: {mode: nat}\n",
    "bad mode": "network:\n  lab: {cidr: 10.80.0.0/24, mode: bridge}\n",
    "bad size": "volume:\n  data: {size: -1G}\n",
    "user-data not a script": "instance:\n  web: {user_data: 'rm -rf /'}\n",
    "user-data over the limit":
        "instance:\n  web: {user_data: \"#!/bin/sh\\n" + "x" * (USER_DATA_MAX + 1) + "\"}\n",
}


@pytest.mark.parametrize("what", sorted(HOSTILE_STACKS))
def test_hostile_stacks_are_one_line_errors(spied, recorder, what):
    magics, calls = spied
    del calls[:]
    recorder.hostile_input("YAML stacks")
    for verb in ("plan", "apply"):
        with pytest.raises(UsageError) as err:
            magics.cloud(f"{verb} --stack rl-hostile", HOSTILE_STACKS[what])
        _one_line(str(err.value))
    assert not [c for c in calls if any(w in c[0].lower() for w in MUTATING)]
    assert "rl-hostile" not in [s["name"] for s in magics._cloud.inventory.stacks()]


leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                 st.binary(max_size=8))
documents = st.recursive(leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(["instance", "network", "volume", "web",
                                               "image", "count", "network", "cidr",
                                               "size", "user_data", "volume", "tier"]),
                              st.text(max_size=10), st.integers()), inner, max_size=4)),
    max_leaves=30)


@settings(max_examples=400, deadline=None, database=None)
@given(doc=documents)
def test_generated_stack_documents_are_valid_or_one_line_errors(recorder, doc):
    """Any structure a YAML cell can hold (wrong types, unknown keys, nesting): a Stack or
    InvalidSpec, never another exception."""
    recorder.hostile_input("YAML stacks")
    try:
        stack.parse(doc if isinstance(doc, dict) else {"instance": doc})
    except InvalidSpec as exc:
        _one_line(str(exc))


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=300))
def test_generated_stack_text_is_valid_or_one_line_errors(recorder, text):
    recorder.hostile_input("YAML stacks")
    try:
        stack.parse(text)
    except InvalidSpec as exc:
        _one_line(str(exc))


# ----- user-data, paths with '..' -------------------------------------------------------
def test_user_data_over_the_limit_is_refused_before_anything_is_made(spied, recorder,
                                                                      tmp_path):
    magics, calls = spied
    big = "#!/bin/sh\n" + "echo x\n" * (USER_DATA_MAX // 7 + 1)
    magics.shell.user_ns["rl_big"] = big
    (tmp_path / "big.sh").write_text(big)
    (tmp_path / "huge.sh").write_bytes(b"#!/bin/sh\n" + b"#" * (64 << 20))  # never read
    for line in ("instance create rl-ud --user-data $rl_big",
                 f"instance create rl-ud --user-data {tmp_path / 'big.sh'}",
                 f"instance create rl-ud --user-data {tmp_path / 'huge.sh'}"):
        del calls[:]
        recorder.hostile_input("user-data")
        with pytest.raises(UsageError) as err:
            magics.cloud(line)
        _one_line(str(err.value))
        assert str(USER_DATA_MAX) in str(err.value)
        assert not [c for c in calls if any(w in c[0].lower() for w in MUTATING)]
    recorder.hostile_input("user-data")
    with pytest.raises(InvalidSpec, match="at most"):
        magics._cloud.instances.create("rl-ud", user_data=big, wait=False)
    assert not magics._cloud.provider.exists("rl-ud")


@pytest.mark.parametrize("line", [
    "image import rl-img ../../etc/passwd",
    "image import rl-img /var/lib/nbcloud/images/../../../etc/shadow",
    "pool create rl-pool --path /var/lib/../../tmp/rl",
    "pool create rl-pool --path ../rl",
    "key import rl-key ../../root/.ssh/id_ed25519.pub",
    "key import rl-key /tmp/../etc/ssh/ssh_host_ed25519_key.pub",
    "instance create rl-ud --user-data ../../etc/shadow",
])
def test_paths_with_dot_dot_are_refused(spied, recorder, line):
    magics, calls = spied
    del calls[:]
    recorder.hostile_input("paths with ..")
    with pytest.raises(UsageError) as err:
        magics.cloud(line)
    _one_line(str(err.value))
    assert "'..'" in str(err.value)
    assert not [c for c in calls if any(w in c[0].lower() for w in MUTATING)]
    assert not any(k.name == "rl-key" for k in magics._cloud.keys.list())


@pytest.mark.parametrize("text", [
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
     "-----END OPENSSH PRIVATE KEY-----\n"),
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\x1b[2J evil",
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
     "comment\x07with bell"),
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDf",
    "ssh-ed25519 not-base64!",
])
def test_hostile_public_keys_are_refused_without_echoing_them(spied, recorder, text):
    magics = spied[0]
    recorder.hostile_input("key text")
    with pytest.raises((InvalidSpec, CloudError)) as err:
        magics._cloud.keys.import_("rl-key", text)
    _one_line(str(err.value))
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in str(err.value)
    assert not any(k.name == "rl-key" for k in magics._cloud.keys.list())


# ----- inputs that would reach the host itself --------------------------------------------
def _qcow2(path, *options: str, patch: tuple[int, str, int] | None = None) -> str:
    """A qcow2 made by qemu-img (with `options`), its header then edited by `patch`
    (offset, struct format, value) where QEMU would not write what the test needs."""
    import struct
    import subprocess
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    args += ["-o", ",".join(options)] if options else []
    subprocess.run([*args, str(path), "64M"], check=True)
    if patch:
        data = bytearray(path.read_bytes())
        struct.pack_into(patch[1], data, patch[0], patch[2])
        path.write_bytes(bytes(data))
    return str(path)


@pytest.fixture(scope="module")
def host_inputs(tmp_path_factory):
    """(line, what the refusal says) for inputs that aim at the host: images that make
    QEMU open host files, networks over the host's ranges, forwards over its ports,
    synced folders over its system folders and secrets, DNS records pointing away."""
    from nbcloud.core import config
    tmp = tmp_path_factory.mktemp("rl-host")
    (tmp / "rl-shadow").write_text("root:$y$j9T$rlsecret:19000:0:99999:7:::\n")
    (tmp / "rl-etc").symlink_to("/etc")
    (tmp / "rl-keys").symlink_to(config.home())
    images = {
        # (qemu-img makes the data file, empty: a real attack names an existing one)
        "data file": _qcow2(tmp / "df.qcow2", f"data_file={tmp / 'rl-data'}"),
        "incompatible feature": _qcow2(tmp / "if.qcow2", patch=(72, ">Q", 1 << 9)),
        "encrypted": _qcow2(tmp / "en.qcow2", patch=(32, ">I", 1)),
        "backing file": _qcow2(tmp / "bf.qcow2", patch=(8, ">Q", 512)),
        "header extension": _qcow2(tmp / "he.qcow2", patch=(112, ">I", 0x0BADF00D)),
    }
    lines = [(f"image import rl-img {path}", what) for what, path in images.items()]
    lines += [(f"image import rl-img {tmp / 'rl-shadow'}", "not a disk image")]
    lines += [(f"network create rl-net --cidr {cidr}", why) for cidr, why in (
        ("127.0.0.0/24", "loopback"), ("169.254.0.0/24", "link-local"),
        ("224.0.0.0/24", "multicast"), ("0.0.0.0/24", "this network"),
        ("240.0.0.0/24", "reserved"), ("10.0.0.0/8", "/16"), ("10.96.0.0/15", "/16"))]
    lines += [("floating create rl-ghost --port 22 --host-port 22", "below 1024"),
              ("floating create rl-ghost --port 53 --host-port 53 --proto udp",
               "below 1024")]
    lines += [(f"instance create rl-sync --sync {host}:/mnt/host", "virtiofsd")
              for host in ("/", "/etc", "/root", config.home(), config.home() / "keys",
                           tmp / "rl-etc", tmp / "rl-keys")
              if os.path.isdir(host)]
    lines += [(f"dns add nbcloud rl-rec {ip}", "not an address on network")
              for ip in ("8.8.8.8", "127.0.0.1", "169.254.169.254")]
    return lines


def test_inputs_aimed_at_the_host_are_refused_in_one_line(spied, recorder, host_inputs):
    magics, calls = spied
    for line, words in host_inputs:
        del calls[:]
        recorder.hostile_input("aimed at the host")
        with pytest.raises(UsageError) as err:
            magics.cloud(line)
        _one_line(str(err.value))
        assert words in str(err.value), line
        assert "rlsecret" not in str(err.value) and "root:$y$" not in str(err.value)
        assert not [c for c in calls if any(w in c[0].lower() for w in MUTATING)], line
    recorder.hostile_input("aimed at the host")
    magics.shell.user_ns["rl_names"] = ["rl-a", "rl-b"]
    with pytest.raises(UsageError, match="list") as err:
        magics.cloud("apply --stack rl-hostile", "instance:\n  {rl_names}: {}\n")
    _one_line(str(err.value))
