"""Secrets: no private key, password or token appears in a cell's output, a log or the
inventory.

A notebook-like session (an IPython shell with `%load_ext nbcloud`) makes a login key and
an instance whose user-data holds a planted password, runs the verbs a student would, and
makes a few mistakes on purpose (a private key where a public one belongs, user-data that
is not a script). Every output is kept: stdout and stderr, every displayed object in every
format (text, HTML...), every cell's result in every format, the log records of every
logger, the warnings. They, the inventory file, the instance's console and QEMU logs, its
libvirt definition and nbcloud's home folder (keys aside) are then searched for the
password, the login key's private lines and the instance's private host key (read back
from its seed ISO).
"""
from __future__ import annotations

import io
import logging
import secrets
import sqlite3
import warnings
from pathlib import Path

import pycdlib
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from nbcloud.core import config
from nbcloud.providers.libvirt.volumes import INSTANCE_POOL

VM = "rl-sec-vm"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _pem_body(text: str) -> list[str]:
    """The base64 lines of the PEM blocks in `text` (what a leak would show)."""
    return [line.strip() for line in text.splitlines()
            if len(line.strip()) >= 16 and not line.strip().startswith("-----")
            and "PRIVATE KEY" not in line]


def _seed_host_key(cloud, name: str) -> list[str]:
    """The private host key nbcloud put in the seed ISO of instance `name`."""
    path = cloud.provider.volume_path(INSTANCE_POOL, f"{name}.seed.iso")
    iso = pycdlib.PyCdlib()
    iso.open(path)
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, joliet_path="/user-data")
    finally:
        iso.close()
    text = out.getvalue().decode(errors="replace")
    start = text.index("-----BEGIN OPENSSH PRIVATE KEY-----")
    end = text.index("-----END OPENSSH PRIVATE KEY-----", start)
    return _pem_body(text[start:end].replace("\\n", "\n"))


def test_no_secret_in_cells_logs_or_inventory(cloud, tmp_path, recorder):
    password = "rl-" + secrets.token_hex(16)
    token = secrets.token_urlsafe(24)
    shell = InteractiveShell.instance()
    outputs: list[str] = []
    records = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)

    def cell(code: str) -> None:
        with warnings.catch_warnings(record=True) as caught, capture_output() as cap:
            warnings.simplefilter("always")
            result = shell.run_cell(code, store_history=False)
            if result.result is not None:
                data, _meta = shell.display_formatter.format(result.result)
                outputs.extend(str(v) for v in data.values())
        outputs.extend([cap.stdout, cap.stderr] + [str(w.message) for w in caught])
        for out in cap.outputs:
            outputs.extend(str(v) for v in out.data.values())
        if result.error_in_exec is not None:
            outputs.append(f"{type(result.error_in_exec).__name__}: {result.error_in_exec}")

    inventory = tmp_path / "rl-sec.sqlite"
    try:
        cell("%load_ext nbcloud")
        cell(f"%config CloudMagics.inventory = '{inventory}'")
        cell(f"%cloud connect {cloud.uri}")
        cell("%cloud key create rl-sec")
        user_data = (f"#!/bin/sh\necho 'db_password={password}' > /root/creds\n"
                     f"echo 'api_token={token}' >> /root/creds\n")
        shell.user_ns.update(rl_ud=user_data, rl_bad_ud=f"password={password}",
                             rl_stack_pw=password)
        cell(f"vm = %cloud instance create {VM} --key rl-sec --user-data $rl_ud")
        cell("vm")
        host_key = _seed_host_key(cloud, VM)
        login_key = _pem_body((config.home() / "keys" / "rl-sec").read_text())
        assert host_key and login_key
        for line in (f"%cloud instance show {VM}", "%cloud instance list", "%cloud key list",
                     "%cloud key show rl-sec", f"%cloud instance ssh {VM} -- ls /root",
                     f"%cloud instance ssh {VM} -- false", "%cloud ls",
                     f"%cloud instance console {VM}", "%cloud drift",
                     "%cloud export yaml",
                     # mistakes: a private key given as a public one, user-data that is
                     # not a script (its text holds the password), the key file by path
                     f"%cloud key import rl-bad {config.home() / 'keys' / 'rl-sec'}",
                     "%cloud instance create rl-sec-bad --user-data $rl_bad_ud --no-wait"):
            cell(line)
        cell("print(vm.ssh('wc -l < /root/creds').strip(), 'lines of creds')")
        cell("%%cloud plan --stack rl-sec-stack\n"
             "instance:\n  rl-sec-planned: {user_data: \"#!/bin/sh\\necho {rl_stack_pw}\"}\n")
        console = cloud.instances.get(VM).console()
        qemu_log = Path(f"/var/log/libvirt/qemu/{VM}.log")
        logs = [console, qemu_log.read_text(errors="replace") if qemu_log.exists() else "",
                cloud.provider.domain_xml_desc(VM)]
        cell(f"%cloud instance delete {VM}")
        cell("%cloud key delete rl-sec")
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
        cell("%unload_ext nbcloud")
        if cloud.provider.exists(VM):
            cloud.instances.delete(VM)
    assert any("2 lines of creds" in o for o in outputs), "the user-data did not run"
    assert any("<table" in o for o in outputs), "no HTML output was captured"
    assert any("that is a private key" in o for o in outputs), "the mistake was not shown"
    assert not cloud.provider.exists("rl-sec-bad")

    stores = {"cell outputs": "\n".join(outputs), "log records": "\n".join(records.lines),
              "console, QEMU log and domain XML": "\n".join(logs)}
    for path in (inventory, Path(f"{inventory}-wal")):
        if path.exists():
            stores[f"inventory {path.name}"] = path.read_bytes().decode(errors="replace")
    for path in config.home().rglob("*"):
        if path.is_file() and "keys" not in path.relative_to(config.home()).parts:
            stores[f"nbcloud home {path.name}"] = path.read_bytes().decode(errors="replace")
    # the inventory as SQLite hands it out (its pages may sit in the WAL): it must hold
    # this session's operations, or the search below would prove nothing about it
    with sqlite3.connect(inventory) as db:
        stores["inventory rows"] = "\n".join(db.iterdump())
    assert f"'{VM}'" in stores["inventory rows"] and "'create'" in stores["inventory rows"]
    planted = {"password": [password], "token": [token], "login private key": login_key,
               "instance private host key": host_key}
    recorder.hostile_input("planted secrets", sum(len(v) for v in planted.values()))
    found = [f"{what} in {where}" for where, text in stores.items()
             for what, needles in planted.items() if any(n in text for n in needles)]
    recorder.lose([f"secret leaked: {f}" for f in found])
    assert found == []
    assert sum(len(t) for t in stores.values()) > 10_000, "too little was captured to mean anything"


@pytest.fixture(autouse=True)
def _no_leftover(cloud):
    yield
    for name in (VM, "rl-sec-bad"):
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
