"""Reservations as files dnsmasq reads (providers/libvirt/dhcp_files.py): the network
XML that names the folder, the files, and who gets a reload signal."""
from __future__ import annotations

import subprocess
import time

from nbcloud.providers.libvirt import dhcp_files
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.local import storage_paths


def test_a_new_network_names_its_folder_and_an_old_one_gets_it_once():
    text = lx.network_xml("lab", "10.80.0.0/24", "nat", "nbc-lab", "/var/lib/nbcloud/dhcp/lab")
    assert lx.network_hostsdir(text) == "/var/lib/nbcloud/dhcp/lab"
    plain = lx.network_xml("lab", "10.80.0.0/24", "nat", "nbc-lab")
    assert lx.network_hostsdir(plain) == ""
    upgraded = lx.with_hostsdir(plain, "/var/lib/nbcloud/dhcp/lab")
    assert lx.network_hostsdir(upgraded) == "/var/lib/nbcloud/dhcp/lab"
    assert lx.parse_network(upgraded) == lx.parse_network(plain)
    # dnsmasq options of the user's own are left alone
    assert lx.with_hostsdir(upgraded, "/elsewhere") is None


def test_only_a_local_system_daemon_has_the_folder():
    assert dhcp_files.folder(storage_paths("qemu:///system"), "qemu:///system", "lab") == \
        storage_paths("qemu:///system")["dhcp"] / "lab"
    for uri in ("qemu:///session", "test:///default", "qemu+ssh://root@h2/system"):
        assert dhcp_files.folder(storage_paths(uri), uri, "lab") is None
    # a network another tool named: never a folder that climbs out, nor one to delete
    for name in ("..", ".", "a/../..", "Lab", ""):
        assert dhcp_files.folder(storage_paths("qemu:///system"), "qemu:///system", name) \
            is None


def test_a_folder_named_by_a_definition_is_used_only_if_it_is_ours(tmp_path):
    ours = tmp_path / "dhcp" / "lab"
    dhcp_files.make(ours)
    assert oct(ours.stat().st_mode & 0o777) == "0o755"   # dnsmasq runs unprivileged
    assert dhcp_files.used_by(ours, str(ours))
    assert not dhcp_files.used_by(ours, "/etc")           # a definition pointing elsewhere
    assert not dhcp_files.used_by(ours, "")
    assert not dhcp_files.used_by(None, str(ours))


def test_a_reservation_is_one_whole_file_and_a_release_removes_it(tmp_path):
    where = tmp_path / "lab"
    dhcp_files.make(where)
    dhcp_files.write(where, "52:54:00:AB:CD:EF", "10.80.0.5", "web", 10)
    files = sorted(p.name for p in where.iterdir())
    assert files == ["52-54-00-ab-cd-ef"]                 # no half-written dotfile left
    assert (where / files[0]).read_text() == "52:54:00:ab:cd:ef,10.80.0.5,web,10m\n"
    assert oct((where / files[0]).stat().st_mode & 0o777) == "0o644"
    assert dhcp_files.has(where, "52:54:00:ab:cd:ef")
    assert dhcp_files.drop(where, "no-such-network", "52:54:00:ab:cd:ef")
    assert not dhcp_files.drop(where, "no-such-network", "52:54:00:ab:cd:ef")
    assert list(where.iterdir()) == []


def test_the_reload_signal_goes_to_a_dnsmasq_only(tmp_path, monkeypatch):
    """A stale pid file may name another program: it must not get a SIGHUP (which
    would end it)."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        monkeypatch.setattr(dhcp_files, "PIDS", tmp_path)
        (tmp_path / "lab.pid").write_text(f"{other.pid}\n")
        dhcp_files.reload("lab")
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
