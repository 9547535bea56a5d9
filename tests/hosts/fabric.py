"""Three lab servers on this machine: libvirt daemons joined by a fabric, reached by SSH.

Each "host" is a libvirtd of its own (its own `host_uuid`, so migration between them is
allowed) in a mount namespace where /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt, /var/log/libvirt and /var/lib/nbcloud are folders of a private root,
with Debian's dropbear as its SSH server in the same namespaces (so `virt-ssh-helper`, which
`qemu+ssh://` runs on the far side, finds that daemon's socket). The first host shares the
network namespace of the test process, whose bridge `mhfab0` (10.99.0.1/24) is the fabric;
the others have network namespaces of their own, joined to that bridge by veth pairs
(10.99.0.2, 10.99.0.3...). Everything is reached as a user reaches real servers:
`qemu+ssh://root@ADDRESS/system`, with the keys and known_hosts of ~/.ssh, which the tier's
script (scripts/hosts-tier.sh) makes a private folder for this process and its children.

The shared daemon of the other tiers (netns nbcloud-test) is never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

from tests.reliability.private_daemon import CONF, FOLDERS, QEMU_CONF, spawn


BRIDGE = "mhfab0"
SUBNET = "10.99.0"
SSH_DIR = Path.home() / ".ssh"
# what the private root holds besides libvirt's own folders: nbcloud's pools
EXTRA = {"nbcloud": "/var/lib/nbcloud"}


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def ssh_dir_is_private() -> bool:
    """Whether ~/.ssh is a mount of its own (the tier's script binds a scratch folder
    there): the tests write keys and known_hosts into it."""
    return any(line.split()[4] == str(SSH_DIR)
               for line in Path("/proc/self/mountinfo").read_text().splitlines())


class LabHost:
    """One libvirtd + dropbear in namespaces of their own (see the module's docstring)."""

    def __init__(self, index: int, root: Path):
        self.index = index
        self.name = f"mh-h{index}"
        self.address = f"{SUBNET}.{index}"
        self.root = Path(root)
        self.host_uuid = str(uuid.uuid4())
        self.uri = f"qemu+ssh://root@{self.address}/system"
        # the network namespace of a host but the first (which shares the test process's):
        # made by scripts/hosts-tier.sh before the tier starts, so that its clean-up finds
        # every process left there (QEMU, dnsmasq, libvirtd) even if this process dies
        self.netns = f"{os.environ.get('HOSTS_FABRIC', 'mh-fabric')}-{index}" \
            if index > 1 else None
        self.proc: subprocess.Popen | None = None

    # ----- set-up -----------------------------------------------------------------------
    def prepare(self) -> None:
        for sub in [*FOLDERS, *EXTRA, "log/qemu"]:   # log/qemu: QEMU's console logs
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for name in CONF:
            src, dst = Path("/etc/libvirt", name), self.root / "etc" / name
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            elif src.exists():
                shutil.copy(src, dst)
        with open(self.root / "etc" / "qemu.conf", "a") as f:
            f.write(QEMU_CONF)
        # QEMU's capabilities as this machine's daemon probed them (the same binaries):
        # a fresh daemon would probe every emulator again, most of a minute when busy
        caps = Path("/var/cache/libvirt/qemu/capabilities")
        if caps.is_dir():
            shutil.copytree(caps, self.root / "cache" / "qemu" / "capabilities",
                            dirs_exist_ok=True)
        with open(self.root / "etc" / "libvirtd.conf", "a") as f:
            f.write(f'\nhost_uuid = "{self.host_uuid}"\n')
        key = self.root / "dropbear_ed25519"
        run("dropbearkey", "-t", "ed25519", "-f", str(key))
        public = next(line for line in run("dropbearkey", "-y", "-f", str(key))
                      .stdout.splitlines() if line.startswith("ssh-"))
        with open(SSH_DIR / "known_hosts", "a") as f:
            f.write(f"{self.address} {' '.join(public.split()[:2])}\n")
        if self.index == 1:
            return
        if not Path(f"/run/netns/{self.netns}").exists():
            raise RuntimeError(f"no network namespace {self.netns}: run this tier with "
                               "scripts/hosts-tier.sh")
        veth = f"mh-veth{self.index}"
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
            self.netns)
        run("ip", "link", "set", veth, "master", BRIDGE, "up")
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", f"{self.address}/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"]):
            run(*self._enter(), *argv)

    def _enter(self) -> list[str]:
        if self.netns is None:
            return []
        return ["nsenter", f"--net=/run/netns/{self.netns}"]

    def start(self, timeout: float = 30.0, ssh: bool = True) -> None:
        """Start libvirtd (and dropbear, unless `ssh` is False: a daemon started again
        after `kill_daemon`, whose dropbear lives on)."""
        (self.root / "run" / "libvirt-sock").unlink(missing_ok=True)
        # dropbear forks into the background (its pid file says which process it is);
        # then the shell becomes libvirtd, in the same namespaces
        boot = f"exec libvirtd --pid-file {self.root}/libvirtd.pid"
        if ssh:
            boot = (f"dropbear -s -p {self.address}:22 -r {self.root}/dropbear_ed25519 "
                    f"-P {self.root}/dropbear.pid && {boot}")
        self.proc = spawn(self._enter(), self.root, {**FOLDERS, **EXTRA}, ["sh", "-c", boot],
                          self.answers, f"libvirtd of {self.name}", timeout)

    def answers(self) -> bool:
        """Whether the daemon's socket takes a connection and dropbear its port."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.root / "run" / "libvirt-sock"))
        except OSError:
            return False
        try:
            with socket.create_connection((self.address, 22), timeout=2):
                return True
        except OSError:
            return False

    # ----- faults and tear-down -----------------------------------------------------------
    def kill_daemon(self) -> None:
        """SIGKILL libvirtd, as a crash would (its guests and dropbear live on)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def _pid(self, what: str) -> int | None:
        try:
            return int((self.root / f"{what}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Power off this host's guests and networks (their QEMU and dnsmasq outlive
        libvirtd), then stop libvirtd and dropbear."""
        import libvirt
        if self.proc is not None and self.proc.poll() is None:
            try:
                conn = libvirt.open(f"qemu+unix:///system?socket={self.root}/run/libvirt-sock")
                for dom in conn.listAllDomains(0):
                    if dom.isActive():
                        dom.destroy()
                for net in conn.listAllNetworks(0):
                    if net.isActive():
                        net.destroy()
                conn.close()
            except libvirt.libvirtError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        pid = self._pid("dropbear")
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.netns is not None:
            run("ip", "link", "delete", f"mh-veth{self.index}", check=False)


class Fabric:
    """The bridge in this process's network namespace and the hosts joined to it."""

    def __init__(self, root: Path, count: int = 3):
        self.root = Path(root)
        self.hosts = [LabHost(i, self.root / f"h{i}") for i in range(1, count + 1)]

    def up(self) -> None:
        if not ssh_dir_is_private():
            raise RuntimeError(f"{SSH_DIR} is not a private folder: run this tier with "
                               "scripts/hosts-tier.sh")
        key = SSH_DIR / "id_ed25519"
        if not key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        shutil.copy(SSH_DIR / "id_ed25519.pub", SSH_DIR / "authorized_keys")
        (SSH_DIR / "known_hosts").write_text("")
        run("ip", "link", "set", "lo", "up")
        if not Path(f"/sys/class/net/{BRIDGE}").exists():
            run("ip", "link", "add", BRIDGE, "type", "bridge")
            run("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        for host in self.hosts:
            host.prepare()
            host.start()

    def down(self) -> None:
        for host in reversed(self.hosts):
            host.stop()
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            run("ip", "link", "delete", BRIDGE, check=False)


IMAGES = Path("/var/lib/nbcloud/images")
TCG = {"accelerator": "tcg", "reason": "the hosts tier runs software emulation (KVM is not "
       "usable on this machine)"}


def record_tcg(provider) -> None:
    """What a probe found on this machine, in the cache the tier's home holds."""
    from nbcloud.providers.libvirt import accel
    cache_file = accel._cache_file()
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    cache[accel._cache_key(provider)] = TCG
    cache_file.write_text(json.dumps(cache))


def open_cloud(fabric: "Fabric", inventory: Path):
    """The cloud of the fabric's hosts: opened on the first, which gets the tiny image
    of this machine's image pool and the default network; the others added to it."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    home, *others = fabric.hosts
    cloud = Cloud(home.uri, inventory=Inventory(inventory))
    record_tcg(cloud.provider)
    cloud.ensure_default_network()
    meta = json.loads((IMAGES / "tiny.json").read_text())
    cloud.images.put_kernel_image("tiny", IMAGES / "tiny.vmlinuz", IMAGES / "tiny.initrd",
                                  meta["cmdline"], meta["digest"])
    cloud.hosts.add(home.name, home.uri)
    for host in others:
        cloud.hosts.add(host.name, host.uri)
        record_tcg(cloud.provider.peers[host.name])
    return cloud
