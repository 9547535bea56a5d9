"""Create -> SSH-ready beside the peers, on the same host, image and network, interleaved.

tiny image (kernel boot, busybox + dropbear):
    nbcloud  `instances.create` + `ssh("true")`
    floor    the same domain XML started by plain `virsh create`, polled the same way
    virt-install  `--import --boot kernel=...,initrd=...,kernel_args=...` with the same
             kernel, initrd, seed disk and MAC (hence address) as nbcloud's instance
debian image (disk, real cloud-init, ~45-60 s under TCG, so few rounds):
    nbcloud  `instances.create(image="debian")` + `ssh("true")`
    virt-install  `--cloud-init user-data=...,meta-data=...,network-config=...` with the
             same cloud-config nbcloud writes, a fresh overlay of the same image made by
             virt-install itself (`--disk backing_store=...`), and the same kernel boot
    kcli     `kcli create vm -i debian.qcow2` (PyPI kcli in .venv-bench, its own cloud-init
             ISO); the image has no boot loader (nbcloud boots its kernel directly), so
             kcli gets the same kernel through its `qemuextra` override

Every peer's guest gets an address reserved in the `nbcloud` network for its MAC, so the
SSH poll goes to a known address; "SSH-ready" is a command run over SSH with our key.

    ip netns exec nbcloud-test .venv/bin/python bench/peers.py tiny [--rounds 5]
    ip netns exec nbcloud-test .venv/bin/python bench/peers.py debian [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boot  # noqa: E402
import machine  # noqa: E402
import timing  # noqa: E402

from nbcloud.api import Cloud  # noqa: E402
from nbcloud.core import cloudinit  # noqa: E402
from nbcloud.services import (
    keys,  # noqa: E402
    ssh,  # noqa: E402
)

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
URI = "qemu:///system"
NETWORK = "nbcloud"
KCLI = ROOT / ".venv-bench" / "bin" / "kcli"


def virsh(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-q", "-c", URI, *args], check=check, text=True,
                          capture_output=True)


def ssh_ready(ip: str, host_key: str | None, timeout: float = 300.0) -> None:
    """The banner, then `true` over SSH with our key; retried until it runs (a real
    image's sshd can answer before cloud-init has written the authorized key). A guest
    silent for 5 minutes (a kcli round once never answered) fails its round instead of
    holding the whole bench."""
    deadline = time.monotonic() + timeout
    key_path = keys.user_key("default").private_path
    ssh.wait_for_banner(ip, timeout=timeout)
    while True:
        try:
            if host_key:
                client = ssh.connect(ip, host_key=host_key, key_path=key_path)
            else:   # the peer's guest made its own host key: accept what it offers
                client = paramiko.SSHClient()
                client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
                client.connect(ip, username="root", timeout=20, allow_agent=False,
                               look_for_keys=False,
                               pkey=paramiko.Ed25519Key.from_private_key_file(str(key_path)))
            try:
                ssh.run(client, "true")
                return
            finally:
                client.close()
        except (ssh.SSHError, paramiko.SSHException, OSError) as exc:
            if "host key" in str(exc):     # not our seed's key: waiting will not help
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- tiny ------------------------------------------------------------------------------

class TinyVirtInstall:
    """virt-install of the tiny image with nbcloud's kernel, seed disk and MAC."""

    def __init__(self, cloud: Cloud, name: str, flavor: str):
        self.name = name
        xml_path, self.meta = boot.prepare_floor(cloud, name, flavor)
        self.xml_path = xml_path
        image = cloud.images.get("tiny")
        pool = cloud.provider.conn.storagePoolLookupByName("nbcloud")
        root = pool.storageVolLookupByName(f"{name}.root.qcow2").path()
        seed = pool.storageVolLookupByName(f"{name}.seed.iso").path()
        memory = cloud_flavor_mib(flavor)
        self.argv = [
            "virt-install", "--connect", URI, "--name", name, "--memory", str(memory),
            "--vcpus", "1", "--virt-type", "qemu", "--osinfo", "linux2022",
            "--boot", f"kernel={image.kernel},initrd={image.initrd},"
                      f"kernel_args={image.cmdline}",
            "--disk", f"path={root},format=qcow2,bus=virtio",
            "--disk", f"path={seed},format=raw,bus=virtio,readonly=on",
            "--network", f"network={NETWORK},mac={self.meta['mac']},model=virtio",
            "--graphics", "none", "--noautoconsole", "--import"]

    def round(self) -> float:
        def run():
            subprocess.run(self.argv, check=True, capture_output=True)
            ssh_ready(self.meta["ip"], self.meta["hostkey"], timeout=120)
        try:
            return timed(run)
        finally:
            virsh("destroy", self.name)
            virsh("undefine", self.name)

    def close(self, cloud: Cloud) -> None:
        virsh("destroy", self.name)
        virsh("undefine", self.name)
        virsh("define", self.xml_path)        # back to nbcloud, which deletes it whole
        if cloud.provider.exists(self.name):
            cloud.instances.delete(self.name)
        os.unlink(self.xml_path)


def cloud_flavor_mib(flavor: str) -> int:
    from nbcloud.core.flavors import get_flavor
    return get_flavor(flavor).memory >> 20


def bench_tiny(cloud: Cloud, rounds: int, flavor: str) -> dict:
    nb_name, floor_name, vi_name = "bn-nb", "bn-floor", "bn-vi"
    for leftover in (nb_name, floor_name, vi_name):
        virsh("destroy", leftover)
        if cloud.provider.exists(leftover):
            try:
                cloud.instances.delete(leftover)
            except Exception:
                virsh("undefine", leftover)
    floor_xml, floor_meta = boot.prepare_floor(cloud, floor_name, flavor)
    vi = TinyVirtInstall(cloud, vi_name, flavor)
    times: dict[str, list[float]] = {"nbcloud": [], "floor": [], "virt-install": []}
    runners = {
        "nbcloud": lambda: timing.create_to_ssh(cloud, nb_name, flavor=flavor),
        "floor": lambda: boot.floor_round(floor_xml, floor_meta, floor_name),
        "virt-install": vi.round,
    }
    try:
        runners["nbcloud"]()                  # warm caches once, not counted
        order = list(runners)
        for i in range(rounds):
            for label in order[i % 3:] + order[:i % 3]:
                times[label].append(runners[label]())
                print(f"  round {i + 1} {label}: {times[label][-1]:.2f} s", flush=True)
    finally:
        virsh("destroy", floor_name)
        virsh("define", floor_xml)
        if cloud.provider.exists(floor_name):
            cloud.instances.delete(floor_name)
        os.unlink(floor_xml)
        vi.close(cloud)
    return {"image": "tiny", "flavor": flavor, "rounds": rounds,
            "results": {k: timing.summary(v) for k, v in times.items()}}


# --- debian ----------------------------------------------------------------------------

class Reserved:
    """An address in the nbcloud network for a fresh MAC (what nbcloud gives its own
    instances), so a peer's guest gets a known address by DHCP."""

    def __init__(self, cloud: Cloud, name: str):
        self.provider = cloud.provider
        for r, _live in self.provider.host_reservations(NETWORK, name):
            self.provider.release_address(NETWORK, r.mac)   # a killed run's leftover
        self.mac = self.provider.random_mac()
        self.r = self.provider.reserve_address(NETWORK, self.mac, name)
        self.provider.publish(self.r).result()
        self.ip = self.r.ip

    def release(self) -> None:
        self.provider.release_address(NETWORK, self.mac)


class DebianVirtInstall:
    """virt-install --cloud-init of the debian image: same kernel boot, same cloud-config
    and static network-config as nbcloud writes, the overlay made by virt-install."""

    def __init__(self, cloud: Cloud, name: str, memory_mib: int, tmp: Path):
        self.name, self.cloud = name, cloud
        self.addr = Reserved(cloud, name)
        image = cloud.images.get("debian")
        host = cloudinit.new_host_key(f"{name}-host")
        self.host_public = host.public
        user = keys.user_key("default")
        files = {
            "user-data": cloudinit.cloud_config(name, [user.public], host.private,
                                                host.public),
            "meta-data": f"instance-id: {name}\nlocal-hostname: {name}\n",
            "network-config": cloudinit.network_config(cloudinit.StaticNet(
                self.addr.mac, f"{self.addr.ip}/{self.addr.r.prefix}", self.addr.r.gateway,
                (self.addr.r.gateway,))),
        }
        for fname, text in files.items():
            (tmp / fname).write_text(text)
            os.chmod(tmp / fname, 0o600)
        self.volume = f"{name}.qcow2"
        size_gib = max((image.virtual_size or 0) >> 30, 2)
        self.argv = [
            "virt-install", "--connect", URI, "--name", name, "--memory", str(memory_mib),
            "--vcpus", "1", "--virt-type", "qemu", "--osinfo", "linux2022",
            "--boot", f"kernel={image.kernel},initrd={image.initrd},"
                      f"kernel_args={image.cmdline}",
            # its default q35 puts the cloud-init ISO on SATA (AHCI), which Debian's
            # cloud kernel cannot read; on `pc` (nbcloud's machine type too) it is IDE
            "--machine", "pc",
            "--disk", f"pool=nbcloud,size={size_gib},format=qcow2,bus=virtio,"
                      f"backing_store={image.disk},backing_format=qcow2",
            "--cloud-init", f"user-data={tmp / 'user-data'},meta-data={tmp / 'meta-data'},"
                            f"network-config={tmp / 'network-config'}",
            "--network", f"network={NETWORK},mac={self.addr.mac},model=virtio",
            "--graphics", "none", "--noautoconsole", "--import"]

    def cleanup_domain(self) -> None:
        virsh("destroy", self.name)
        virsh("undefine", self.name)
        virsh("vol-delete", "--pool", "nbcloud", self.volume)

    def round(self) -> float:
        def run():
            subprocess.run(self.argv, check=True, capture_output=True, text=True)
            ssh_ready(self.addr.ip, self.host_public)
        try:
            return timed(run)
        finally:
            self.cleanup_domain()

    def close(self) -> None:
        self.cleanup_domain()
        self.addr.release()


class DebianKcli:
    """kcli (PyPI) with a config of its own in a scratch HOME: the local qemu:///system,
    the nbcloud pool and network, our public key; the image is the pool's debian.qcow2."""

    def __init__(self, cloud: Cloud, name: str, memory_mib: int, tmp: Path):
        self.name, self.cloud, self.tmp = name, cloud, tmp
        self.addr: Reserved | None = None
        image = cloud.images.get("debian")
        self.home = tmp / "home"
        (self.home / ".kcli").mkdir(parents=True)
        (self.home / ".ssh").mkdir()
        user = keys.user_key("default")
        (self.home / ".ssh" / "id_ed25519.pub").write_text(user.public + "\n")
        shutil.copy(user.private_path, self.home / ".ssh" / "id_ed25519")
        (self.home / ".kcli" / "config.yml").write_text(
            "default:\n  client: local\nlocal:\n  type: kvm\n  host: 127.0.0.1\n"
            "  pool: nbcloud\n")
        # QEMU (user libvirt-qemu) reads -kernel itself when it comes through
        # qemuextra; libvirt does not hand it over as for <kernel>: readable copies.
        boot_dir = Path(tempfile.mkdtemp(prefix="bn-kcli-", dir="/var/tmp"))
        os.chmod(boot_dir, 0o755)
        self.boot_dir = boot_dir
        for src, dst in ((image.kernel, "vmlinuz"), (image.initrd, "initrd")):
            shutil.copy(src, boot_dir / dst)
            os.chmod(boot_dir / dst, 0o644)
        # kcli splits qemuextra on spaces; the kernel reads tabs as separators too, and
        # an XML attribute turns them back into spaces anyway.
        append = "\t".join(image.cmdline.split())
        # kcli always puts its cloud-init ISO on SATA (AHCI), and Debian's cloud kernel
        # has no AHCI driver (only ata_piix): the guest would never see it. The same
        # ISO (kcli makes it as POOL/NAME.ISO) is added once more on virtio.
        pool = cloud.provider.conn.storagePoolLookupByName("nbcloud")
        iso = Path(ET.fromstring(pool.XMLDesc(0)).findtext("target/path")) / f"{name}.ISO"
        self.params = {
            "image": Path(image.disk).name, "pool": "nbcloud", "memory": memory_mib,
            "numcpus": 1,
            # kcli picks kvm when /dev/kvm exists; here it cannot run a guest (see
            # nbcloud/accel.py), so it is told TCG, as nbcloud finds by itself
            "virttype": "qemu",
            "qemuextra": f"-kernel {boot_dir}/vmlinuz -initrd {boot_dir}/initrd "
                         f"-append {append} "
                         f"-drive file={iso},if=none,id=bnseed,format=raw,readonly=on "
                         "-device virtio-blk-pci,drive=bnseed,addr=0x1e",
        }
        self.argv = [str(KCLI), "create", "vm", "--paramfile", str(tmp / "kcli.yml"), name]
        self.env = {**os.environ, "HOME": str(self.home)}

    def cleanup_domain(self) -> None:
        subprocess.run([str(KCLI), "delete", "vm", "-y", self.name], env=self.env,
                       capture_output=True)
        virsh("destroy", self.name)
        virsh("undefine", self.name)

    def round(self) -> float:
        # A fresh MAC (so reservation) every round: kcli's guest asks DHCP with a client
        # id made from its new machine-id, and dnsmasq will not hand the reserved address
        # to it while the last round's lease (another client id) still holds it; the
        # guest then got a pool address and the SSH poll waited on the reserved one.
        self.addr = Reserved(self.cloud, self.name)
        (self.tmp / "kcli.yml").write_text(json.dumps(
            {**self.params, "nets": [{"name": NETWORK, "mac": self.addr.mac}]}))

        def run():
            out = subprocess.run(self.argv, env=self.env, capture_output=True, text=True)
            if out.returncode or "failure" in out.stdout.lower():
                raise RuntimeError(f"kcli create failed: {(out.stdout + out.stderr)[-800:]}")
            ssh_ready(self.addr.ip, None)
        try:
            return timed(run)
        finally:
            self.cleanup_domain()
            self.addr.release()

    def close(self) -> None:
        self.cleanup_domain()
        shutil.rmtree(self.boot_dir, ignore_errors=True)


def kcli_problem() -> str | None:
    """Why kcli cannot run here, or None."""
    if not KCLI.exists():
        return f"{KCLI.relative_to(ROOT)} is missing (scripts/setup.sh --bench installs it)"
    return None


def bench_debian(cloud: Cloud, rounds: int, flavor: str, peers: list[str],
                 budget: float) -> dict:
    from nbcloud.core.flavors import get_flavor
    memory = get_flavor(flavor).memory >> 20
    nb_name = "bn-nbd"
    tmp = Path(tempfile.mkdtemp(prefix="bn-peers-"))
    runners, closers, notes = {}, [], {}

    if "nbcloud" in peers:
        runners["nbcloud"] = lambda: timing.create_to_ssh(cloud, nb_name, image="debian",
                                                          flavor=flavor)
    if "virt-install" in peers:
        (tmp / "vi").mkdir()
        vi = DebianVirtInstall(cloud, "bn-vid", memory, tmp / "vi")
        vi.cleanup_domain()
        runners["virt-install"], _ = vi.round, closers.append(vi.close)
    if "kcli" in peers:
        problem = kcli_problem()
        if problem:
            notes["kcli"] = problem
        else:
            (tmp / "kc").mkdir()
            kc = DebianKcli(cloud, "bn-kcd", memory, tmp / "kc")
            kc.cleanup_domain()
            runners["kcli"], _ = kc.round, closers.append(kc.close)
    times: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    start, done = time.monotonic(), 0
    try:
        for i in range(rounds):
            spent = time.monotonic() - start
            if i and spent / i * (i + 1) > budget:   # another round would overrun
                print(f"  stopping after {i} round(s): {spent:.0f} s spent, budget "
                      f"{budget:.0f} s (a busy machine)", flush=True)
                break
            done += 1
            for label in order[i % len(order):] + order[:i % len(order)]:
                try:
                    times[label].append(runners[label]())
                    print(f"  round {i + 1} {label}: {times[label][-1]:.2f} s", flush=True)
                except Exception as exc:    # a peer that fails is reported, not hidden
                    notes[label] = f"{type(exc).__name__}: {exc}"[:600]
                    print(f"  round {i + 1} {label}: FAILED {notes[label]}", flush=True)
    finally:
        for close in closers:
            close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"image": "debian", "flavor": flavor, "rounds": done, "notes": notes,
            "results": {k: timing.summary(v) for k, v in times.items() if v}}


def print_table(result: dict) -> None:
    base = result["results"].get("nbcloud")
    print(f"create -> SSH-ready, {result['image']} image, {result['flavor']}, "
          f"{result['rounds']} interleaved rounds")
    print(f"  {'':14} {'median':>8} {'min':>8} {'max':>8}  nbcloud/peer")
    for label, s in result["results"].items():
        ratio = base["median"] / s["median"] if base else float("nan")
        print(f"  {label:14} {s['median']:8.2f} {s['min']:8.2f} {s['max']:8.2f}  s  "
              f"{ratio:.3f}")
    for label, note in result.get("notes", {}).items():
        print(f"  {label}: {note}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", choices=["tiny", "debian"])
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--flavor")
    ap.add_argument("--out", help="results file name (default peers-IMAGE)")
    ap.add_argument("--budget", type=float, default=420.0,
                    help="debian only: start no round that would end past this many "
                         "seconds (a round is one boot of each)")
    ap.add_argument("--peers", nargs="+", default=["nbcloud", "virt-install", "kcli"],
                    help="debian only: which of them to run")
    args = ap.parse_args()
    # a debian boot under TCG on a busy machine outlasts the notebook's 120 s SSH wait
    cloud = Cloud(URI, ssh_timeout=900.0)
    cloud.build_tiny()
    if args.image == "tiny":
        result = bench_tiny(cloud, args.rounds or 5, args.flavor or "m.nano")
    else:
        result = bench_debian(cloud, args.rounds or 2, args.flavor or "m.small", args.peers,
                              args.budget)
    base = result["results"].get("nbcloud")
    result["ratios"] = {f"nbcloud/{k}": round(base["median"] / s["median"], 3)
                        for k, s in result["results"].items() if base and k != "nbcloud"}
    result.update(benchmark=f"create-to-ssh beside the peers, {args.image} image",
                  accelerator=cloud.accelerator()["accelerator"], machine=machine.describe(),
                  date=time.strftime("%Y-%m-%d %H:%M"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out or 'peers-' + args.image}.json").write_text(
        json.dumps(result, indent=1))
    print_table(result)
    cloud.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
