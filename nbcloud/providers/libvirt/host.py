"""Host bring-up without systemd: `nbcloud host up [--netns NAME]` / `nbcloud host down`.

`up` starts virtlogd and libvirtd when no daemon answers (inside a network namespace if
asked, so bridges, dnsmasq and guests live there), then makes sure nbcloud's storage pools
and NAT network exist. It records what it started in a state file, and `down` stops only
that, with what would not survive a reboot either: the guests and networks, the
balancers' HAProxy processes and the nft tables of port forwards. Running `up` twice
changes nothing. (The host agent, started after `up` and stopped before `down`, is
nbcloud/agent/control.py's: it composes services, which this layer cannot.)

Both take the daemon's URI and the state file, so that a caller that runs a daemon of its
own (the reliability tier's private one) can have the same done to it with
`start_daemon=False` / `stop_daemon=False`.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from nbcloud.core.errors import HostError
from nbcloud.core.spec import check_name
from nbcloud.providers.libvirt import nsexec
from nbcloud.providers.libvirt.networks import DEFAULT_CIDR
from nbcloud.providers.libvirt.volumes import IMAGE_POOL, INSTANCE_POOL

SOCKET = Path("/var/run/libvirt/libvirt-sock")
STATE = Path("/var/lib/nbcloud/host.json")
SYSTEM = "qemu:///system"
NFT_TABLES = ("nbcloud", "nbcloud_lb")   # port forwards; balancers keeping client addresses
NEEDED = {"libvirtd": "libvirt-daemon-system", "virtlogd": "libvirt-daemon-system",
          "qemu-system-x86_64": "qemu-system-x86", "dnsmasq": "dnsmasq-base",
          "iptables": "iptables", "ip": "iproute2"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, capture_output=True, text=True)


def missing_programs() -> list[str]:
    """Debian packages to install for programs that are not on PATH."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return sorted({pkg for prog, pkg in NEEDED.items() if not shutil.which(prog, path=path)})


def ksm_state() -> str:
    """Kernel same-page merging, as the host has it. nbcloud never changes it: it is the
    host's setting (it merges every process's mergeable pages, costs a scanning thread's
    CPU, and shared pages leak timing between guests); warm clones share their base's
    memory without it."""
    try:
        run = Path("/sys/kernel/mm/ksm/run").read_text().strip()
        shared = int(Path("/sys/kernel/mm/ksm/pages_sharing").read_text())
    except (OSError, ValueError):
        return "not in this kernel"
    state = {"0": "off", "1": "on", "2": "off (unmerged)"}.get(run, run)
    return (f"{state}, {shared * os.sysconf('SC_PAGE_SIZE') >> 20} MiB merged (the "
            "host's setting: nbcloud leaves it as it finds it)")


def daemon_answers() -> bool:
    """Whether a libvirtd is listening on the system socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(SOCKET))
        return True
    except OSError:
        return False


def _pid_of(pidfile: str) -> int | None:
    try:
        pid = int(Path(pidfile).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _netns_of(pid: int) -> str | None:
    """The name of the network namespace process `pid` runs in (None: the same as ours)."""
    # Compared with ours and the named ones: /proc/1 may be out of reach in a sandbox.
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        if inode == os.stat("/proc/self/ns/net").st_ino:
            return None
    except OSError:
        return None
    for entry in Path("/var/run/netns").glob("*"):
        try:
            if os.stat(entry).st_ino == inode:
                return entry.name
        except OSError:
            continue
    return "(an unnamed namespace)"


def _load_state(path: Path = STATE) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_state(state: dict, path: Path = STATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=1))


def _ensure_qemu_user() -> list[str]:
    """libvirt runs QEMU as libvirt-qemu:kvm on Debian; create them if absent."""
    done = []
    try:
        grp.getgrnam("kvm")
    except KeyError:
        _run("groupadd", "--system", "kvm")
        done.append("created group kvm")
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        _run("useradd", "--system", "--gid", "kvm", "--home-dir", "/var/lib/libvirt",
             "--shell", "/usr/sbin/nologin", "libvirt-qemu")
        done.append("created user libvirt-qemu")
    return done


def _open_kvm_device() -> str | None:
    """Give /dev/kvm the owner and mode udev gives it on Debian (root:kvm 0660)."""
    dev = Path("/dev/kvm")
    if not dev.exists():
        return None
    st = dev.stat()
    kvm_gid = grp.getgrnam("kvm").gr_gid
    if st.st_gid == kvm_gid and st.st_mode & 0o060 == 0o060:
        return None
    os.chown(dev, -1, kvm_gid)
    os.chmod(dev, (st.st_mode & 0o777) | 0o660)
    return "opened /dev/kvm to the kvm group (as udev does)"


def _wait_for_socket(timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_answers():
            return
        time.sleep(0.1)
    raise HostError(f"libvirtd did not answer on {SOCKET} within {timeout:.0f} s: "
                    "see /var/log/libvirt/ and run `libvirtd` in the foreground to see why")


def start_daemons(netns: str | None, state_file: Path = STATE) -> list[str]:
    """Start virtlogd and libvirtd unless a daemon answers; return what was done."""
    done: list[str] = []
    state = _load_state(state_file)
    running = _pid_of("/var/run/libvirtd.pid")
    if daemon_answers() and running:
        where = _netns_of(running)
        if where != netns:
            raise HostError(
                f"libvirtd already runs in {'netns ' + where if where else 'the host namespace'}"
                f", not in {'netns ' + netns if netns else 'the host namespace'}: run "
                "`nbcloud host down` first, or use that namespace")
        return done
    if os.geteuid() != 0:
        raise HostError("starting the system libvirt daemon needs root: run `sudo nbcloud "
                        "host up`, or use qemu:///session (no daemon set-up needed)")
    missing = missing_programs()
    if missing:
        raise HostError("missing Debian packages: install them with `apt-get install "
                        + " ".join(missing) + "` (or run `make setup`)")
    for folder in ("/var/run/libvirt", "/var/log/libvirt", "/var/lib/libvirt"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    done += _ensure_qemu_user()
    if (msg := _open_kvm_device()):
        done.append(msg)
    if netns:
        check_name(netns, "network namespace name")
        if not Path("/var/run/netns", netns).exists():
            _run("ip", "netns", "add", netns)
            state["created_netns"] = netns
            done.append(f"created network namespace {netns}")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
    if not _pid_of("/var/run/virtlogd.pid"):
        _run("virtlogd", "-d")
        state["virtlogd"] = _pid_of("/var/run/virtlogd.pid")
        done.append("started virtlogd")
    daemon = ["libvirtd", "-d"]
    subprocess.run(nsexec.command(netns, daemon) if netns else daemon, check=True)
    _wait_for_socket()
    state["libvirtd"] = _pid_of("/var/run/libvirtd.pid")
    state["netns"] = netns
    _save_state(state, state_file)
    done.append(f"started libvirtd{' in netns ' + netns if netns else ''}")
    return done


def up(netns: str | None = None, *, uri: str = SYSTEM, state: Path = STATE,
       start_daemon: bool = True) -> list[str]:
    """Bring the host up; returns the list of changes (empty when all was in place)."""
    from nbcloud.providers.libvirt.provider import LibvirtProvider
    done = start_daemons(netns, state) if start_daemon else []
    provider = LibvirtProvider(uri)
    try:
        changed = [provider.ensure_pool(pool, str(provider.paths[pool]))
                   for pool in (INSTANCE_POOL, IMAGE_POOL)]
        changed.append(provider.ensure_default_network(DEFAULT_CIDR))
    finally:
        provider.close()
    if any(changed):
        done.append("made sure the nbcloud pools and network exist and are active")
    return done


def _stop(pid: int | None, what: str, timeout: float = 15.0) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def down(*, uri: str = SYSTEM, state: Path = STATE, netns: str | None = None,
         stop_daemon: bool = True) -> list[str]:
    """Stop what `up` started: its guests and networks, the balancers and the forwards'
    nft tables, libvirtd, virtlogd, the netns. With `stop_daemon=False` the caller runs
    the daemon: everything but the daemons is stopped."""
    saved = _load_state(state)
    done: list[str] = []
    libvirtd = saved.get("libvirtd")
    if not stop_daemon or (libvirtd and _pid_of("/var/run/libvirtd.pid") == libvirtd):
        done += _stop_host_side(uri, netns or saved.get("netns"))
        done += _stop_guests_and_networks(uri)
    if stop_daemon:
        done += _stop_daemons(saved)
    state.unlink(missing_ok=True)
    if not done:
        done.append("nothing to stop: nbcloud host up started nothing that still runs")
    return done


def _stop_daemons(saved: dict) -> list[str]:
    done = []
    libvirtd = saved.get("libvirtd")
    if libvirtd and _pid_of("/var/run/libvirtd.pid") == libvirtd and _stop(libvirtd,
                                                                            "libvirtd"):
        done.append("stopped libvirtd")
    virtlogd = saved.get("virtlogd")
    if virtlogd and _pid_of("/var/run/virtlogd.pid") == virtlogd and _stop(virtlogd,
                                                                             "virtlogd"):
        done.append("stopped virtlogd")
    netns = saved.get("created_netns")
    if netns and Path("/var/run/netns", netns).exists():
        subprocess.run(["ip", "netns", "delete", netns], check=False)
        done.append(f"deleted network namespace {netns}")
    return done


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    """`argv` run in `netns`: a name (`ip netns exec`) or the path of a namespace file
    (`nsenter`, e.g. /proc/PID/ns/net of a private daemon's holder); as is for None."""
    if not netns:
        return argv
    if "/" in netns:
        return ["nsenter", f"--net={netns}", *argv]
    return ["ip", "netns", "exec", check_name(netns, "network namespace name"), *argv]


def _stop_host_side(uri: str, netns: str | None) -> list[str]:
    """The balancers' processes and the forwards' nft tables: a reboot loses them, so
    `down` does too (the host agent puts them back from the inventory)."""
    from nbcloud.providers.libvirt.provider import LibvirtProvider
    provider = LibvirtProvider(uri)
    try:
        if not provider.runs_balancers:   # another machine's daemon, or the test driver
            return []
        done = provider.stop_balancers()
    finally:
        provider.close()
    for table in NFT_TABLES:
        out = subprocess.run(in_netns(netns, ["nft", "delete", "table", "ip", table]),
                             capture_output=True, check=False)
        if out.returncode == 0:
            done.append(f"removed nft table ip {table}")
    return done


def _stop_guests_and_networks(uri: str = SYSTEM) -> list[str]:
    """Guests and networks (dnsmasq) outlive libvirtd; stop them so nothing is left.
    Their definitions stay, so `up` and `start` bring them back."""
    from nbcloud.providers.libvirt.provider import LibvirtProvider
    backend = LibvirtProvider(uri)
    try:
        return backend.stop_everything()
    finally:
        backend.close()
