"""A network's DHCP reservations as files dnsmasq reads by itself (`dhcp-hostsdir`).

Telling a running network about a reservation through libvirt (`net-update ... live` of an
`ip-dhcp-host`) makes libvirt remove and re-add the network's whole firewall, one iptables
program per rule: measured here 0.35-0.45 s of wall time per instance, the network locked
meanwhile (every other update of it waits), where the same update of a DNS record takes
2 ms. So the networks nbcloud makes on a local system daemon carry a dnsmasq option,
`dhcp-hostsdir=/var/lib/nbcloud/dhcp/NETWORK`: a reservation is one file there, which
dnsmasq reads on its own (inotify) the moment it is written. libvirt still keeps every
reservation in the network's definition (that is what makes two notebooks unable to take
one address, and what a restarted network starts from); only the live half is the file.

dnsmasq never forgets a host it read from such a file until it is told to reload
(SIGHUP), so a release removes the file and sends it one. The folder is only ever the one
under nbcloud's own path: a network definition that names another folder is not trusted
with a write (the file would be written as root wherever it pointed).
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from nbcloud.core.spec import NAME_RE
from nbcloud.providers.libvirt.local import is_local

#: the folder of every network's reservation files, beside the pools
KEY = "dhcp"
PIDS = Path("/run/libvirt/network")   # where libvirt's dnsmasq writes its pid


def folder(paths: dict, uri: str, network: str) -> Path | None:
    """Where network `network`'s reservation files go (None: this daemon's networks get
    their reservations through libvirt only: another machine's, a session daemon's)."""
    if KEY not in paths or not is_local(uri) or not NAME_RE.fullmatch(network):
        return None   # a name nbcloud could not have given ('..' would climb out)
    return Path(paths[KEY], network)


def make(where: Path) -> None:
    """The folder, readable by dnsmasq (it runs as an unprivileged user)."""
    where.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    where.mkdir(mode=0o755, exist_ok=True)
    os.chmod(where, 0o755)


def remove(where: Path | None) -> None:
    if where is not None:
        shutil.rmtree(where, ignore_errors=True)


def used_by(where: Path | None, named: str) -> bool:
    """Whether the network's definition names `where` as its hosts folder (`named`: what
    it names, from xml.network_hostsdir); another folder is never written to."""
    return where is not None and bool(named) and Path(named) == where and where.is_dir()


def _file(where: Path, mac: str) -> Path:
    return where / mac.lower().replace(":", "-")


def write(where: Path, mac: str, ip: str, name: str, lease_minutes: int) -> None:
    """Reservation `mac` -> `ip` (`name`), for dnsmasq to read now: written to a dotfile
    (which dnsmasq skips) and renamed, so it never reads half a line."""
    line = f"{mac.lower()},{ip},{name},{lease_minutes}m\n"
    target = _file(where, mac)
    part = where / f".{target.name}.part"
    part.write_text(line)
    os.chmod(part, 0o644)
    os.replace(part, target)


def has(where: Path, mac: str) -> bool:
    return _file(where, mac).exists()


def drop(where: Path, network: str, mac: str) -> bool:
    """Remove `mac`'s file and make the network's dnsmasq forget it; whether it was
    there."""
    try:
        _file(where, mac).unlink()
    except FileNotFoundError:
        return False
    reload(network)
    return True


def reload(network: str) -> None:
    """SIGHUP to the network's dnsmasq: it reads its hosts files and folder again (and
    forgets the hosts of removed files)."""
    try:
        pid = int((PIDS / f"{network}.pid").read_text().strip())
        # a stale pid file may name another program now: only a dnsmasq gets the signal
        if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq":
            os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        pass   # not running: it reads the folder when it starts
