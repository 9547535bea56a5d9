"""Where nbcloud keeps its files: per user, overridable with NBCLOUD_HOME."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _folder(env: str, xdg: str, fallback: str, mode: int = 0o777) -> Path:
    """$env if set, else $xdg (or `fallback`) / nbcloud; made if missing."""
    if os.environ.get(env):
        path = Path(os.environ[env])
    else:
        base = os.environ.get(xdg) or os.path.expanduser(fallback)
        path = Path(base) / "nbcloud"
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


def home() -> Path:
    """nbcloud's data folder (keys, inventory, probe cache)."""
    return _folder("NBCLOUD_HOME", "XDG_DATA_HOME", "~/.local/share", 0o700)


def mark(path: Path) -> str:
    """A short mark of an inventory file (from its real path, so a rebuilt file keeps
    it): what names engine objects that several inventories on one daemon would
    otherwise share, like network filters."""
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]


def cache_dir() -> Path:
    """Downloaded packages and built images (safe to delete)."""
    return _folder("NBCLOUD_CACHE", "XDG_CACHE_HOME", "~/.cache")


def default_uri() -> str:
    """qemu:///system when its daemon socket is there (root or libvirt group), else session."""
    if os.environ.get("NBCLOUD_URI"):
        return os.environ["NBCLOUD_URI"]
    sock = Path("/var/run/libvirt/libvirt-sock")
    if sock.exists() and os.access(sock, os.W_OK):
        return "qemu:///system"
    return "qemu:///session"
