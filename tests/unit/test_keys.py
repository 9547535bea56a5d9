"""Key pairs: create, import (validated), list, delete; the private key never shows."""
from __future__ import annotations

import logging
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nbcloud.core.errors import AlreadyExists, NotFound, SSHError
from nbcloud.core.spec import InvalidSpec
from nbcloud.services import keys
from nbcloud.ui import commands

pytestmark = pytest.mark.unit


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCLOUD_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _openssh(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _private_text(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def test_create_writes_a_0600_private_key_and_shows_only_the_public(home):
    pair = keys.create_key("lab")
    assert pair.type == "ssh-ed25519" and pair.fingerprint.startswith("SHA256:")
    mode = stat.S_IMODE(pair.private_path.stat().st_mode)
    assert mode == 0o600 and pair.has_private
    assert (home / "keys" / "lab.pub").read_text().strip() == pair.public
    with pytest.raises(AlreadyExists):
        keys.create_key("lab")
    assert keys.get_key("lab") == pair


@pytest.mark.parametrize("make", [
    lambda: _openssh(rsa.generate_private_key(65537, 2048)) + " me@laptop",
    lambda: _openssh(ec.generate_private_key(ec.SECP256R1())),
    lambda: _openssh(ec.generate_private_key(ec.SECP384R1())) + " two words",
    lambda: keys.generate("ed@laptop")[1],
])
def test_import_accepts_public_key_lines(home, make):
    line = make()
    pair = keys.import_key("mine", "\n" + line + "\n")
    assert pair.public == line and not pair.has_private
    assert pair.type == line.split()[0]
    assert [k.name for k in keys.list_keys()] == ["mine"]


def test_import_refuses_bad_key_text_in_one_line_without_quoting_it(home):
    private_key = rsa.generate_private_key(65537, 2048)
    private = _private_text(private_key)
    short = _openssh(rsa.generate_private_key(65537, 1024))
    ed = keys.generate("x")[1].split()
    cases = [
        (private, "that is a private key"),
        ("ssh-ed25519", "not an SSH public key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "not an SSH public key"),
        ("hello world", "not an SSH public key"),
        (f"ssh-ed25519 {ed[1][:-4]}!!!!", "damaged"),
        (f"ssh-rsa {ed[1]}", "damaged|not of type"),
        (short, "1024 bits"),
        (f"{ed[0]} {ed[1]}\n{ed[0]} {ed[1]}", "2 lines"),
        (f"{ed[0]} {ed[1]} evil\x1b[2Jcomment", "control characters"),
        ("", "0 lines"),
    ]
    for text, words in cases:
        with pytest.raises(InvalidSpec, match=words) as err:
            keys.import_key("bad", text)
        assert "\n" not in str(err.value)
        assert "PRIVATE KEY" not in str(err.value)
        assert not any(len(w) > 8 and w in str(err.value) for w in text.split()
                       if w not in keys.KEY_TYPES)
    assert keys.list_keys() == []


def test_import_from_a_file_and_duplicate_names(home, test_cloud, tmp_path):
    line = keys.generate("file@laptop")[1]
    path = tmp_path / "id.pub"
    path.write_text(line + "\n")
    pair = test_cloud.keys.import_("fromfile", str(path))
    assert pair.public == line
    with pytest.raises(AlreadyExists):
        test_cloud.keys.import_("fromfile", line)
    with pytest.raises(AlreadyExists):
        test_cloud.keys.create("fromfile")
    with pytest.raises(InvalidSpec, match="neither a file nor a public key"):
        test_cloud.keys.import_("other", str(tmp_path / "missing.pub"))


def test_imported_key_cannot_log_in_and_unknown_keys_are_not_invented(home):
    keys.import_key("theirs", keys.generate("x")[1])
    with pytest.raises(SSHError, match="imported without its private key"):
        keys.login_key("theirs")
    with pytest.raises(NotFound, match="key create nope"):
        keys.user_key("nope")
    assert not (home / "keys" / "nope").exists()
    assert keys.login_key("default").exists()     # the default key is made on first use


def test_private_key_never_shows_anywhere(home, test_cloud, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    run = lambda *argv: commands.run(test_cloud, commands.parse(list(argv)))  # noqa: E731
    created = run("key", "create", "lab")
    private = created.private_path.read_text()
    secret = "".join(private.splitlines()[1:-1])
    shown = [repr(created), str(created), created._repr_html_(),
             str(run("key", "list")), run("key", "list")._repr_html_(),
             str(run("key", "show", "lab")), run("key", "show", "lab")._repr_html_(),
             repr(keys.get_key("lab")), repr(keys.list_keys())]
    assert created.public in str(created) and str(created.private_path) in str(created)
    ops = test_cloud.inventory.operations(100)
    shown += [str(op) for op in ops]
    shown += [caplog.text, capsys.readouterr().out]
    for text in shown:
        assert secret not in text and "PRIVATE KEY" not in text
        for line in private.splitlines()[1:-1]:
            assert line not in text
    assert [(o["verb"], o["kind"], o["result"]) for o in ops[:1]] == [("create", "key", "ok")]


def test_key_commands_list_and_delete(home, test_cloud):
    run = lambda *argv: commands.run(test_cloud, commands.parse(list(argv)))  # noqa: E731
    run("key", "create", "a")
    line = keys.generate("b@laptop")[1]
    run("key", "import", "b", *line.split())
    rows = {r["key"]: r for r in run("key", "list")}
    assert rows["a"]["private key here"] == "yes" and rows["b"]["private key here"] == "no"
    assert rows["b"]["fingerprint"] == keys.get_key("b").fingerprint
    assert str(run("key", "delete", "b")) == "deleted key b"
    assert [k.name for k in keys.list_keys()] == ["a"]
    with pytest.raises(NotFound):
        run("key", "delete", "b")


def test_default_key_made_once_when_many_threads_ask_at_once(tmp_path, monkeypatch):
    import threading

    from nbcloud.services import keys as keymod
    monkeypatch.setenv("NBCLOUD_HOME", str(tmp_path / "race-home"))
    barrier, results, errors = threading.Barrier(8), [], []

    def ask():
        barrier.wait()
        try:
            results.append(keymod.user_key("default").public)
        except Exception as exc:  # noqa: BLE001 — the test reports any failure
            errors.append(exc)
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 8 and len(set(results)) == 1
