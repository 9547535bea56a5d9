"""Where a libvirt daemon's files are: on this machine or another, and in which folders."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from nbcloud.core import config
from nbcloud.providers.libvirt.volumes import IMAGE_POOL, INSTANCE_POOL


def is_local(uri: str) -> bool:
    """Whether the daemon runs on this machine (so files it writes, console logs, are
    here, and balancers can run beside it): no transport to another host, or a unix
    socket (qemu+unix://, e.g. a daemon of one's own at another socket path)."""
    parts = urlsplit(uri)
    local_transport = "+" not in parts.scheme or parts.scheme.endswith("+unix")
    return local_transport and parts.hostname in (None, "", "localhost")


def is_remote_system(uri: str) -> bool:
    """Whether `uri` is another machine's system daemon (qemu+ssh://HOST/system, ...)."""
    parts = urlsplit(uri)
    return parts.scheme.startswith("qemu+") and parts.scheme != "qemu+unix" and \
        bool(parts.hostname) and parts.path.rstrip("/") == "/system"


def storage_paths(uri: str) -> dict[str, Path]:
    """Where the instance and image pools and console logs live for `uri` (on the
    daemon's machine: a remote system daemon keeps them where a local one does)."""
    if uri.startswith("qemu:///system") or is_remote_system(uri):
        root, logs = Path("/var/lib/nbcloud"), Path("/var/log/libvirt/qemu")
    elif uri.startswith("test:"):
        root = logs = Path("/nbcloud-test")
    else:
        root = config.home() / "pools"
        logs = config.home() / "console"
    paths = {INSTANCE_POOL: root / "instances", IMAGE_POOL: root / "images", "logs": logs}
    if uri.startswith("qemu:///system"):   # warm clones' bases (providers/libvirt/clones.py)
        paths.update(warm=root / "warm", warm_ram=Path("/dev/shm/nbcloud-warm"),
                     dhcp=root / "dhcp")   # reservations dnsmasq reads (dhcp_files.py)
    return paths
