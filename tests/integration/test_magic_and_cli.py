"""The notebook surface on the real daemon: %cloud create / ssh / list / delete, doctor."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from IPython.core.error import UsageError


def ip_uri(ip) -> str:
    from nbcloud import _magics
    return _magics.api.uri


def test_create_ssh_list_delete_from_a_cell(ip):
    from nbcloud import _magics
    backend = _magics.api.provider
    if backend.exists("it-magic"):
        _magics.api.instances.delete("it-magic")
    inst = ip.run_line_magic("cloud", "instance create it-magic --flavor t.micro")
    try:
        assert inst.state == "running"
        out = ip.run_line_magic("cloud", "instance ssh it-magic -- cat /etc/hostname")
        assert str(out).strip() == "it-magic"
        failing = ip.run_line_magic("cloud", "instance ssh it-magic -- exit 3")
        assert "[exit status 3]" in str(failing)
        # the first notebook's line: a pipe and a quoted pattern reach the guest's shell
        cpu = ip.run_line_magic(
            "cloud", "instance ssh it-magic -- cat /proc/cpuinfo | grep -m1 'model name'")
        assert cpu.result.returncode == 0 and str(cpu).startswith("model name"), str(cpu)
        # the same from a shell: one word is a command line, several words keep theirs
        cli = [sys.executable, "-m", "nbcloud", "--uri", ip_uri(ip), "instance", "ssh",
               "it-magic", "--"]
        env = dict(os.environ)  # the same NBCLOUD_HOME: the same login key
        one = subprocess.run(cli + ["echo 'a  b' | tr a A"], capture_output=True,
                             text=True, timeout=60, env=env)
        assert one.stdout.splitlines()[0] == "A  b", (one.stdout, one.stderr)
        words = subprocess.run(cli + ["printf", "%s|", "a  b", "c"], capture_output=True,
                               text=True, timeout=60, env=env)
        assert words.stdout.splitlines()[0] == "a  b|c|", (words.stdout, words.stderr)
        listing = {row["name"]: row for row in ip.run_line_magic("cloud", "instance list")}
        assert listing["it-magic"]["state"] == "running"
        assert listing["it-magic"]["ip"] == inst.ip
        assert "it-magic" in inst._repr_html_()
    finally:
        msg = ip.run_line_magic("cloud", "instance delete it-magic")
    assert "deleted" in str(msg)
    assert not backend.exists("it-magic")


@pytest.mark.parametrize("bad", ['"x;rm -rf /"', '"../etc"', '"<b>"'])
def test_bad_name_on_real_daemon_creates_nothing(ip, bad):
    from nbcloud import _magics
    backend = _magics.api.provider
    before = (sorted(d.name() for d in backend.conn.listAllDomains()),
              sorted(backend.volumes("nbcloud")), backend.network("nbcloud").hosts)
    with pytest.raises(UsageError, match="not allowed"):
        ip.run_line_magic("cloud", f"instance create {bad}")
    after = (sorted(d.name() for d in backend.conn.listAllDomains()),
             sorted(backend.volumes("nbcloud")), backend.network("nbcloud").hosts)
    assert after == before


def test_doctor_reports_the_probed_accelerator(tmp_path):
    env = dict(os.environ, NBCLOUD_HOME=str(tmp_path))   # no cached probe: probe again
    # the probe gives up on its own (a boot that reaches init or not within 8 s); the
    # timeout only bounds a hang, it is no measure of speed
    out = subprocess.run([sys.executable, "-m", "nbcloud", "doctor"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert "accelerator: " in out.stdout, out.stderr
    accelerator = out.stdout.split("accelerator: ")[1].split()[0]
    if os.path.exists("/sys/module/kvm_pvm") or not os.path.exists("/dev/kvm"):
        assert accelerator == "tcg"     # PVM's /dev/kvm cannot boot a stock kernel
    assert accelerator in ("kvm", "tcg")
    assert out.returncode == 0 and (tmp_path / "accelerator.json").exists(), out.stdout
