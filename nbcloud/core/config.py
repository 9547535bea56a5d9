"""Where nbcloud keeps its files: per user, overridable with NBCLOUD_HOME."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """nbcloud's data folder (keys, inventory, probe cache)."""
    env = os.environ.get("NBCLOUD_HOME")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        path = Path(base) / "nbcloud"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def cache_dir() -> Path:
    """Downloaded packages and built images (safe to delete)."""
    env = os.environ.get("NBCLOUD_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        path = Path(base) / "nbcloud"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_uri() -> str:
    """qemu:///system when its daemon socket is there (root or libvirt group), else session."""
    if os.environ.get("NBCLOUD_URI"):
        return os.environ["NBCLOUD_URI"]
    sock = Path("/var/run/libvirt/libvirt-sock")
    if sock.exists() and os.access(sock, os.W_OK):
        return "qemu:///system"
    return "qemu:///session"
