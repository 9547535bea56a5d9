"""Host folders that reach a guest: a synced folder (virtiofsd serves it as root,
read-write) may not be the host's system folders, nbcloud's own folder (the private
keys), anything holding them, or a symlink to them; a cdrom made from a folder takes
only what is inside it, even when a file is swapped for a symlink while it is made."""
from __future__ import annotations

import os
from pathlib import Path

import pycdlib
import pytest

from nbcloud.core import config
from nbcloud.core.errors import CloudError, InvalidSpec
from nbcloud.services import cdroms
from nbcloud.services.folders import parse_sync


@pytest.mark.parametrize("host", ["/", "/etc", "/etc/ssh", "/root", "/root/.ssh", "/usr",
                                  "/var", "/var/lib/libvirt", "/proc", "/boot", "/dev",
                                  "/sys", "/run"])
def test_system_folders_are_refused(host):
    if not Path(host).is_dir():
        pytest.skip(f"{host} is not here")
    with pytest.raises(InvalidSpec, match="virtiofsd") as err:
        parse_sync(f"{host}:/mnt/host")
    assert "\n" not in str(err.value)


def test_nbcloud_own_folder_its_keys_and_what_holds_them_are_refused(tmp_path):
    home = config.home()                  # the test session's NBCLOUD_HOME
    keys = home / "keys"
    keys.mkdir(exist_ok=True)
    for host in (home, keys, home.parent):
        with pytest.raises(InvalidSpec, match="virtiofsd"):
            parse_sync(f"{host}:/mnt/host")


def test_the_default_nbcloud_folder_is_refused_while_another_is_in_use(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tmp_path / "home" / ".local" / "share" / "nbcloud" / "keys"
    default.mkdir(parents=True)
    (tmp_path / "home" / ".ssh").mkdir()
    for host in (default, default.parent, tmp_path / "home", tmp_path / "home" / ".ssh"):
        with pytest.raises(InvalidSpec, match="virtiofsd"):
            parse_sync(f"{host}:/mnt/host")
    (tmp_path / "home" / "site").mkdir()
    assert parse_sync(f"{tmp_path / 'home' / 'site'}:/srv").host_dir.endswith("/home/site")


def test_symlinks_to_refused_folders_are_refused(tmp_path):
    (tmp_path / "etc-link").symlink_to("/etc")
    (tmp_path / "keys-link").symlink_to(config.home())
    (tmp_path / "hop").symlink_to(tmp_path / "etc-link")
    for link in ("etc-link", "keys-link", "hop"):
        with pytest.raises(InvalidSpec, match="virtiofsd"):
            parse_sync(f"{tmp_path / link}:/mnt/host")


def test_a_folder_of_its_own_is_shared_by_its_real_path(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "site-link").symlink_to(site)
    assert parse_sync(f"{site}:/srv/site").host_dir == str(site)
    # the real path goes to libvirt, not the link (which could be swapped later)
    assert parse_sync(f"{tmp_path / 'site-link'}:/srv/site").host_dir == str(site)


def _iso_files(path: Path) -> dict[str, bytes]:
    import io
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    out = {}
    try:
        for root, _dirs, files in iso.walk(rr_path="/"):
            for name in files:
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=f"{root.rstrip('/')}/{name}")
                out[f"{root.rstrip('/')}/{name}"] = buf.getvalue()
    finally:
        iso.close()
    return out


def test_a_cdrom_made_from_a_folder_takes_nothing_from_outside(tmp_path, monkeypatch):
    """The race: the folder is listed, then a listed file is replaced by a symlink to a
    secret outside the folder before it is opened. The symlink is never followed."""
    secret = tmp_path / "secret"
    secret.write_text("root:$y$j9T$hash:19000:0:99999:7:::\n")
    folder = tmp_path / "cd"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello\n")
    (folder / "sub" / "b.txt").write_text("world\n")
    real_scandir = os.scandir

    def racing_scandir(path):
        entries = list(real_scandir(path))          # the listing is taken...
        victim = folder / "a.txt"
        if victim.exists() and not victim.is_symlink():
            victim.unlink()                         # ...then the file is swapped
            victim.symlink_to(secret)
        return iter(entries)
    monkeypatch.setattr(cdroms.os, "scandir", racing_scandir)
    out = tmp_path / "cd.iso"
    try:
        cdroms.build_iso(folder, out)
    except CloudError as exc:                       # refusing is fine too
        assert "\n" not in str(exc) and "root:" not in str(exc)
        assert not out.exists() or b"root:$y$" not in out.read_bytes()
        return
    files = _iso_files(out)
    assert b"root:$y$" not in out.read_bytes()
    assert files.get("/sub/b.txt") == b"world\n"


def test_a_symlink_in_the_folder_is_refused(tmp_path):
    folder = tmp_path / "cd"
    folder.mkdir()
    (folder / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(CloudError, match="neither a file nor a folder|symlink"):
        cdroms.build_iso(folder, tmp_path / "x.iso")
