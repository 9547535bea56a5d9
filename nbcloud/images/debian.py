"""A Debian bookworm image with the real cloud-init, built from Debian packages.

mmdebstrap makes the root (systemd, cloud-init, openssh-server, the cloud kernel,
ifupdown for cloud-init's network renderer) from the mirror apt already uses; nbcloud
then configures it for the NoCloud datasource, turns the folder into an ext4 filesystem
without mounting anything (`mkfs.ext4 -d`) and that into a qcow2. The filesystem has no
partition table and no boot loader: instances boot it by direct kernel boot with the
kernel and initrd taken from its /boot, `root=/dev/vda`.

The result is cached under the cache folder by a digest of the recipe (suite, packages,
mirror, configuration); it is rebuilt only when one of these changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nbcloud.core.errors import CloudError

Progress = Callable[[str], None]

SUITE = "bookworm"
# e2fsprogs: cloud-init's resizefs runs resize2fs on the root (without it `cloud-init
# status` ends in error).
PACKAGES = ("systemd-sysv", "udev", "cloud-init", "openssh-server",
            "linux-image-cloud-amd64", "ifupdown", "iproute2", "netbase", "ca-certificates",
            "e2fsprogs")
# Predictable names would call the NIC ens3; nbcloud's network-config names it eth0.
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
FS_SIZE = 2 << 30                 # the root filesystem (sparse; ~450 MiB used)
RECIPE_VERSION = 1                # bump when the steps below change

# Files written into the root; part of the recipe digest.
FILES = {
    # C.UTF-8 is built into glibc: with it already in /etc/default/locale, cloud-init's
    # locale module has nothing to generate (its en_US.UTF-8 default needs `locales`
    # and a locale.gen entry, and fails without them).
    # NoCloud is nbcloud's own seed (libvirt); ConfigDrive is OpenStack's (a volume
    # config-2), which ds-identify finds when NoCloud's seed is not there.
    "etc/cloud/cloud.cfg.d/90-nbcloud.cfg": "datasource_list: [NoCloud, ConfigDrive, None]\n"
                                            "locale: C.UTF-8\n",
    "etc/default/locale": "LANG=C.UTF-8\n",
    "etc/fstab": "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n",
    "etc/hostname": "localhost\n",
    # Only what is not ours to decide stays on: no package timers on a teaching guest.
    "etc/systemd/system/apt-daily.timer": None,
    "etc/systemd/system/apt-daily-upgrade.timer": None,
    "etc/systemd/system/e2scrub_all.timer": None,
    "etc/systemd/system/e2scrub_reap.service": None,
}
# Per-machine state a shared base image must not carry (cloud-init makes the host keys
# from the seed; systemd makes a machine id on first boot).
REMOVE = ("etc/ssh/ssh_host_*", "var/lib/dbus/machine-id", "var/cache/apt/*.bin",
          "var/lib/apt/lists/*_Packages", "var/log/*.log")
EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*",
            "/usr/share/info/*")


class DebianImageError(CloudError):
    """The Debian image could not be built (mmdebstrap missing, mirror failing, ...)."""


@dataclass(frozen=True)
class DebianImage:
    disk: Path                    # qcow2 with an ext4 root filesystem, no partitions
    kernel: Path
    initrd: Path
    cmdline: str
    digest: str
    build_seconds: float


def mirror() -> str:
    """The Debian mirror apt on this machine uses (deb.debian.org if none is found)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"),
                 *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
                 *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        try:
            texts.append(path.read_text())
        except OSError:
            continue
    for text in texts:
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                continue
            for uri in re.findall(r"(https?://\S+/debian)/?(?:\s|$)", line):
                return uri
    return "http://deb.debian.org/debian"


def recipe_digest(mirror_uri: str) -> str:
    recipe = {"version": RECIPE_VERSION, "suite": SUITE, "packages": PACKAGES,
              "cmdline": CMDLINE, "size": FS_SIZE, "files": FILES, "remove": REMOVE,
              "excludes": EXCLUDES, "mirror": mirror_uri}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def build_debian(cache_dir: Path, *, progress: Progress | None = None,
                 rebuild: bool = False) -> DebianImage:
    """Build the image (or reuse the cached one made by the same recipe)."""
    say = progress or (lambda _msg: None)
    uri = mirror()
    digest = recipe_digest(uri)
    out = cache_dir / "debian" / digest[:16]
    if not rebuild and (out / "image.json").exists():
        return _load(out)
    _check_tools()
    work = Path(tempfile.mkdtemp(prefix="build-", dir=_mkdir(cache_dir / "debian")))
    start = time.monotonic()
    try:
        root = work / "root"
        say(f"mmdebstrap {SUITE} from {uri} (about a minute)")
        _run(["mmdebstrap", "--variant=apt", "--mode=root", "--quiet",
              f"--include={','.join(PACKAGES)}",
              *[f"--dpkgopt=path-exclude={p}" for p in EXCLUDES],
              SUITE, str(root), f"deb {uri} {SUITE} main"], timeout=1800)
        _configure(root)
        kernel, initrd = _boot_files(root, work)
        say("mkfs.ext4 -d (the folder becomes a filesystem image, nothing is mounted)")
        raw = work / "root.ext4"
        _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(raw),
              str(FS_SIZE // 1024)])
        shutil.rmtree(root)
        say("qemu-img convert -O qcow2")
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "disk.qcow2")])
        raw.unlink()
        seconds = time.monotonic() - start
        (work / "image.json").write_text(json.dumps(
            {"digest": digest, "cmdline": CMDLINE, "build_seconds": round(seconds, 1),
             "mirror": uri, "suite": SUITE}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
        for stale in out.parent.iterdir():  # images of older recipes: 400 MiB each
            if stale != out and not stale.name.startswith("build-"):
                shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    say(f"built the Debian image in {seconds:.0f} s")
    return _load(out)


def _load(out: Path) -> DebianImage:
    meta = json.loads((out / "image.json").read_text())
    return DebianImage(out / "disk.qcow2", out / "vmlinuz", out / "initrd",
                       meta["cmdline"], meta["digest"], meta["build_seconds"])


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_tools() -> None:
    missing = [t for t in ("mmdebstrap", "mkfs.ext4", "qemu-img") if not shutil.which(t)]
    if missing:
        raise DebianImageError(f"building the Debian image needs {', '.join(missing)}: "
                               "run scripts/setup.sh (or apt-get install mmdebstrap "
                               "e2fsprogs qemu-utils)")
    if os.geteuid() != 0:
        # As a user, mmdebstrap's files would belong to sub-uids that mkfs.ext4 -d
        # copies verbatim: root's files in the guest would not be root's.
        raise DebianImageError("building the Debian image needs root (mmdebstrap "
                               "--mode=root): run `sudo nbcloud image build debian`")


def _configure(root: Path) -> None:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:  # mask a unit
            path.unlink(missing_ok=True)
            path.symlink_to("/dev/null")
        else:
            path.write_text(text)
    for pattern in REMOVE:
        for path in root.glob(pattern):
            path.unlink()
    # An empty machine-id (not a missing one) makes systemd generate it at first boot.
    (root / "etc/machine-id").write_text("")


def _boot_files(root: Path, work: Path) -> tuple[Path, Path]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise DebianImageError("the Debian root has no kernel in /boot")
    version = kernels[-1].name[len("vmlinuz-"):]
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.exists():
        raise DebianImageError(f"the Debian root has no initrd for kernel {version}")
    shutil.copyfile(kernels[-1], work / "vmlinuz")
    shutil.copyfile(initrd, work / "initrd")
    return work / "vmlinuz", work / "initrd"


def _netns() -> str:
    """The name of the network namespace we run in ('' for the machine's own)."""
    try:
        out = subprocess.run(["ip", "netns", "identify", str(os.getpid())],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _run(args: list[str], timeout: float = 600) -> None:
    tool = args[0]
    try:
        subprocess.run(args, capture_output=True, text=True, check=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        lines = (exc.stderr or exc.stdout or "").strip().splitlines()
        # mmdebstrap ends with a generic line; its first "E:" line says what went wrong.
        errors = [line for line in lines if line.startswith("E:")]
        why = errors[0] if errors else (lines[-1] if lines else str(exc))
        if tool == "mmdebstrap" and "apt-get update" in why and (ns := _netns()):
            # The test tiers run in the daemon's namespace, where only guests answer.
            why = (f"the Debian mirror is not reachable from network namespace {ns!r}: "
                   "build the image outside it first (`nbcloud image build debian`)")
        raise DebianImageError(f"{tool} failed: {why}") from None
    except subprocess.TimeoutExpired:
        raise DebianImageError(f"{tool} took longer than {timeout:.0f} s") from None
