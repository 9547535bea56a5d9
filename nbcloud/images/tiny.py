"""The tiny image: a Debian cloud kernel and a Python-written initramfs (busybox, dropbear).

Everything comes from Debian packages, fetched from the Debian archive and unpacked in
Python (debian_archive.py: no apt, no dpkg, any Linux); nothing is taken from the host's
own filesystem.  The guest's
/init is ``tiny_init.sh`` beside this module.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbcloud.images.cpio import Archive
from nbcloud.images.debian_archive import (
    ArchiveError,
    Candidate,
    DebianArchive,
    Progress,
    unpack,
)
from nbcloud.images.pvh import pvh_kernel
from nbcloud.images.reseed import nbreseed

BUILDER_VERSION = 1
KERNEL_META = "linux-image-cloud-amd64"
KERNEL_IMAGES = r"linux-image-[0-9.]+-[0-9]+-cloud-amd64"   # what the metapackage names
PACKAGES = ("busybox-static", "dropbear-bin", "libtomcrypt1", "libtommath1", "zlib1g",
            "libcrypt1", "libgmp10", "libc6")
BINARIES = ("usr/sbin/dropbear", "usr/bin/dropbearconvert", "usr/bin/dropbearkey")
# Loaded by /init before anything else, dependencies first.
BOOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "isofs")
# The ACPI power button (libvirt's graceful shutdown) and its input device node.
POWER_MODULES = ("button", "evdev")
# In the image but not loaded at boot: virtiofs (and fuse) for synced folders, loaded by
# the mount step nbcloud puts in the user-data of an instance that has one (synced.py).
# The Debian cloud kernel has no 9p (CONFIG_NET_9P is not set), so virtiofs it is.
# virtio_console: a warm clone's identity arrives on hvc0 (see tiny_init.sh), loaded only
# when the kernel command line says nbwarm=1.
EXTRA_MODULES = ("virtiofs", "virtio_console")
#: The protocol the init speaks to warm clones (tiny_init.sh, images/clone_identity.py).
WARM_PROTOCOL = "NBCLONE1"
# Loaded only on OpenStack (the SMBIOS product says so): Nova's config drive is an ISO9660
# CD-ROM on the IDE bus of the i440fx machine.  The cloud kernel has no AHCI, so a q35
# guest's SATA CD-ROM stays unseen (an image with hw_machine_type=q35 would need it).
CDROM_MODULES = ("ata_piix", "sr_mod")
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib")
# Measured under TCG with scripts/tiny-qemu-try.py: cryptomgr.notests skips the crypto
# self-tests (-0.4 s).  acpi=noirq (routing PCI interrupts without ACPI AML) saved
# another 0.3-0.5 s but is left out: without ACPI's routing a device hot-plugged into a
# PCI slot past the BIOS's table gets no interrupt ("can't find IRQ for PCI INT A"), so
# a third attached volume never appeared.  tsc=reliable, no_timer_check,
# mitigations=off and random.trust_cpu=on made no measurable difference.
CMDLINE = "console=ttyS0 quiet panic=-1 cryptomgr.notests"
# The initramfs stays uncompressed: gzip made boots 0.4 s slower under TCG.

class TinyImageError(RuntimeError):
    """The tiny image could not be built (package missing, archive unreachable, ...)."""


@dataclass(frozen=True)
class TinyImage:
    kernel: Path
    initrd: Path
    cmdline: str
    digest: str  # sha256 over every input: package versions, init script, builder
    warm: str = ""  # the warm-clone protocol its init speaks ("" none)


def build_tiny(cache_dir: Path, *, progress: Progress | None = None) -> TinyImage:
    """Build (or find in ``cache_dir``) the tiny image for the current Debian packages."""
    say = progress or (lambda msg: None)
    cache_dir = Path(cache_dir)
    archive = DebianArchive(cache_dir / "archive", say=say)
    try:
        found = resolve(archive)
    except ArchiveError as exc:
        built = _newest_built(cache_dir)
        if built is None:
            raise TinyImageError(f"{exc}; and no tiny image built from this nbcloud is in "
                                 f"{cache_dir}: build it once where the archive is "
                                 "reachable") from None
        say(f"the Debian archive cannot be read ({exc}); using the image built before")
        return built
    versions = {name: c.version for name, c in found.items()}
    digest = _digest(versions)
    out = cache_dir / f"tiny-{digest[:12]}"
    if (out / "manifest.json").exists():
        return _load(out)
    say(f"building the tiny image {digest[:12]}")
    try:
        debs = {name: archive.deb(c, cache_dir / "debs") for name, c in found.items()}
    except ArchiveError as exc:
        raise TinyImageError(str(exc)) from None
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".tiny-build-") as tmp:
        root, stage = Path(tmp) / "root", Path(tmp) / "out"
        for deb in debs.values():
            unpack(deb, root)
        stage.mkdir()
        bzimage = _kernel_file(root)
        kernel_pkg = next(n for n in versions if n.startswith("linux-image-"))
        kernel = pvh_kernel(cache_dir / "kernels", bzimage,
                            f"{kernel_pkg}_{versions[kernel_pkg]}", say)
        _link_or_copy(kernel or bzimage, stage / ("vmlinux" if kernel else "vmlinuz"))
        initrd = assemble(root, bzimage.name.removeprefix("vmlinuz-")).to_bytes()
        (stage / "initrd.img").write_bytes(initrd)
        manifest = {"digest": digest, "cmdline": CMDLINE, "packages": versions,
                    "kernel": "vmlinux" if kernel else "vmlinuz", "builder": BUILDER_VERSION,
                    "warm": WARM_PROTOCOL}
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for f in stage.iterdir():
            f.chmod(0o644)  # qemu may run as another user (libvirt-qemu)
        stage.chmod(0o755)
        try:
            stage.rename(out)
        except OSError:  # another process built the same image meanwhile
            if not (out / "manifest.json").exists():
                raise
    say(f"tiny image ready: {len(initrd) // 1024} KiB initramfs")
    return _load(out)


def _load(out: Path) -> TinyImage:
    manifest = json.loads((out / "manifest.json").read_text())
    return TinyImage(out / manifest["kernel"], out / "initrd.img", manifest["cmdline"],
                     manifest["digest"], manifest.get("warm", ""))


# --- inputs -------------------------------------------------------------------------

def resolve(archive: DebianArchive) -> dict[str, Candidate]:
    """The candidate of every package, the kernel metapackage resolved to its image."""
    found = archive.candidates([KERNEL_META, *PACKAGES], KERNEL_IMAGES)
    meta = found.get(KERNEL_META)
    kernel = re.search(r"(linux-image-\S+-cloud-amd64) \(= (\S+)\)", meta.depends) \
        if meta else None
    if kernel is None or kernel.group(1) not in found:
        raise ArchiveError(f"cannot resolve {KERNEL_META} to a kernel package")
    missing = [n for n in PACKAGES if n not in found]
    if missing:
        raise ArchiveError(f"packages not in the Debian archive: {', '.join(missing)}")
    return {kernel.group(1): found[kernel.group(1)], **{n: found[n] for n in PACKAGES}}


def _digest(versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    inputs = {"builder": BUILDER_VERSION, "packages": versions, "cmdline": CMDLINE,
              "boot": BOOT_MODULES, "power": POWER_MODULES, "extra": EXTRA_MODULES,
              "cdrom": CDROM_MODULES,
              "udhcpc": UDHCPC_SCRIPT}
    h.update(json.dumps(inputs, sort_keys=True).encode())
    for name in ("tiny_init.sh", "tiny.py", "cpio.py", "reseed.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()


def _newest_built(cache_dir: Path) -> TinyImage | None:
    """The newest image in the cache built from this very source (init, builder, modules):
    one built by another checkout or version would boot another init."""
    found = sorted(cache_dir.glob("tiny-*/manifest.json"), key=lambda p: p.stat().st_mtime)
    for manifest in reversed(found):
        try:
            made = json.loads(manifest.read_text())
            if made["digest"] == _digest(made["packages"]):
                return _load(manifest.parent)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _run(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise TinyImageError(f"{' '.join(args[:2])} failed: {e}") from e
    return done.stdout


def _kernel_file(root: Path) -> Path:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise TinyImageError(f"expected one kernel in the package, found {kernels}")
    return kernels[0]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def assemble(root: Path, kver: str) -> Archive:
    """The initramfs tree, from the unpacked packages under ``root``."""
    arc = Archive()
    for d in ("dev", "proc", "sys", "run/nbcloud", "run/cidata", "var/log", "etc/dropbear"):
        arc.add_dir(d)
    arc.add_dir("tmp", 0o1777)
    arc.add_dir("root", 0o700)
    arc.add_dir("root/.ssh", 0o700)
    arc.add_chardev("dev/console", 5, 1)  # the kernel opens it before /init runs
    arc.add_file("init", (Path(__file__).parent / "tiny_init.sh").read_bytes(), 0o755)
    arc.add_file("usr/share/udhcpc/default.script", UDHCPC_SCRIPT.encode(), 0o755)
    arc.add_file("usr/sbin/nbreseed", nbreseed(), 0o755)
    for name, text in ETC_FILES.items():
        arc.add_file(f"etc/{name}", text.encode(), 0o600 if name == "shadow" else 0o644)
    _add_busybox(arc, root)
    libs: dict[str, Path] = {}
    for binary in BINARIES:
        data = (root / binary).read_bytes()
        arc.add_file(binary, data, 0o755)
        _collect_libs(root, data, libs)
    for soname, path in sorted(libs.items()):
        arc.add_file(f"lib/x86_64-linux-gnu/{soname}", path.read_bytes(), 0o755)
    interp = PurePosixPath(_parse_elf((root / BINARIES[0]).read_bytes()).interp)
    if interp.name in libs:  # libc names the loader too: link, don't copy
        arc.add_symlink(str(interp), f"/lib/x86_64-linux-gnu/{interp.name}")
    else:
        arc.add_file(str(interp), _find_lib(root, interp.name).read_bytes(), 0o755)
    _add_modules(arc, ModuleTree(root / "lib/modules" / kver), kver)
    return arc


def _add_modules(arc: Archive, modules: ModuleTree, kver: str) -> None:
    """The modules with a modules.dep, so that one busybox modprobe loads a whole list."""
    dep_lines = []
    for m in modules.load_order(BOOT_MODULES + POWER_MODULES + EXTRA_MODULES + CDROM_MODULES):
        arc.add_file(f"lib/modules/{kver}/{m}.ko", modules.read(m))
        # modules.dep lists dependencies most dependent first, as depmod does.
        deps = [d for d in reversed(modules.load_order((m,))) if d != m]
        dep_lines.append(f"{m}.ko:" + "".join(f" {d}.ko" for d in deps) + "\n")
    arc.add_file(f"lib/modules/{kver}/modules.dep", "".join(dep_lines).encode())
    for listname, wanted in (("boot", BOOT_MODULES), ("power", POWER_MODULES),
                             ("cdrom", CDROM_MODULES)):
        arc.add_file(f"lib/modules/{listname}.list", (" ".join(wanted) + "\n").encode())


def _add_busybox(arc: Archive, root: Path) -> None:
    busybox = root / "bin/busybox"
    arc.add_file("bin/busybox", busybox.read_bytes(), 0o755)
    # The binary is static x86_64: the amd64 packages are for the build host too.
    for applet in sorted(_run([str(busybox), "--list-full"]).split()):
        if applet != "bin/busybox" and applet not in arc:
            arc.add_symlink(applet, "/bin/busybox")


def _collect_libs(root: Path, data: bytes, libs: dict[str, Path]) -> None:
    for soname in _parse_elf(data).needed:
        if soname not in libs:
            libs[soname] = _find_lib(root, soname)
            _collect_libs(root, libs[soname].read_bytes(), libs)


def _find_lib(root: Path, soname: str) -> Path:
    for d in LIB_DIRS:
        path = _resolve(root, PurePosixPath(d, soname))
        if path is not None:
            return path
    raise TinyImageError(f"shared library {soname} is in none of the packages {PACKAGES}")


def _resolve(root: Path, rel: PurePosixPath, depth: int = 0) -> Path | None:
    """Follow symlinks inside the unpacked tree, absolute ones taken relative to it."""
    path = root / rel
    if depth > 20 or not os.path.lexists(path):
        return None
    if not path.is_symlink():
        return path
    target = PurePosixPath(os.readlink(path))
    target = target.relative_to("/") if target.is_absolute() else rel.parent / target
    return _resolve(root, PurePosixPath(os.path.normpath(target)), depth + 1)


# --- ELF: shared-library needs and kernel-module dependencies --------------------------

@dataclass
class _Elf:
    sections: dict[str, bytes]
    needed: list[str]
    interp: str


def _parse_elf(data: bytes) -> _Elf:
    if data[:5] != b"\x7fELF\x02":
        raise TinyImageError("not a 64-bit ELF file")
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    heads = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    body = [data[h[4]:h[4] + h[5]] if h[1] != 8 else b"" for h in heads]  # 8: SHT_NOBITS

    def cstr(blob: bytes, at: int) -> str:
        return blob[at:blob.index(b"\0", at)].decode()

    sections = {cstr(body[shstrndx], h[0]): b for h, b in zip(heads, body)}
    needed = []
    for h, b in zip(heads, body):
        if h[1] == 6:  # SHT_DYNAMIC; its sh_link names the string table
            for tag, val in struct.iter_unpack("<qQ", b):
                if tag == 1:  # DT_NEEDED
                    needed.append(cstr(body[h[6]], val))
    interp = ""
    for i in range(phnum):
        ptype, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if ptype == 3:  # PT_INTERP
            interp = data[off:off + filesz].rstrip(b"\0").decode()
    return _Elf(sections, needed, interp)


class ModuleTree:
    """The kernel modules of one kernel, by name, with their ``depends=`` from .modinfo."""

    def __init__(self, moddir: Path) -> None:
        self.files = {}
        for f in sorted(moddir.rglob("*.ko*")):
            name = f.name.split(".ko")[0].replace("-", "_")
            self.files.setdefault(name, f)

    def read(self, name: str) -> bytes:
        try:
            f = self.files[name]
        except KeyError:
            raise TinyImageError(f"kernel module {name} is not in the kernel package") from None
        if f.name.endswith(".ko"):
            return f.read_bytes()
        if f.name.endswith(".ko.xz"):
            return lzma.decompress(f.read_bytes())  # busybox insmod does not unpack xz
        raise TinyImageError(f"cannot unpack kernel module {f.name}")

    def depends(self, name: str) -> list[str]:
        info = _parse_elf(self.read(name)).sections.get(".modinfo", b"")
        for field in info.split(b"\0"):
            if field.startswith(b"depends="):
                return [d for d in field[8:].decode().split(",") if d]
        return []

    def load_order(self, wanted: tuple[str, ...]) -> list[str]:
        """``wanted`` with their dependencies, each after what it depends on."""
        order: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in path:
                raise TinyImageError(f"module dependency cycle: {' -> '.join(path + (name,))}")
            for dep in self.depends(name):
                visit(dep, path + (name,))
            order.append(name)

        for name in wanted:
            visit(name, ())
        return order


# --- small files of the guest -----------------------------------------------------

ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    # "*": no password can match, key login only (dropbear refuses empty passwords).
    "shadow": "root:*:19000:0:99999:7:::\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
    "shells": "/bin/sh\n/bin/ash\n",
    "profile": "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nPS1='\\u@\\h:\\w\\$ '\n",
}

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc hook of the nbcloud tiny image.  When /init already set a static address
# ($NB/static-IFACE holds it) the lease only confirms it: nothing is changed.  A lease of
# another address means dnsmasq did not know the reservation yet (a warm clone asks
# within a second of its start, as the host publishes it): released, and asked again
# 3 s later, at most 10 times.
NB=/run/nbcloud
static=$(cat "$NB/static-$interface" 2>/dev/null)
case "$1" in
deconfig)
	[ -n "$static" ] || ip -4 addr flush dev "$interface"
	ip link set "$interface" up ;;
bound | renew)
	if [ -n "$static" ]; then
		[ "$ip" = "$static" ] && exit 0
		echo "nbcloud: DHCP offered $ip, static is $static" >/dev/console
		read -r n <"$NB/dhcp-tries-$interface" 2>/dev/null
		n=$((${n:-0} + 1))
		echo "$n" >"$NB/dhcp-tries-$interface"
		read -r pid <"/run/udhcpc.$interface.pid" || exit 0
		[ "$n" -le 10 ] && (kill -USR2 "$pid"; sleep 3; kill -USR1 "$pid") >/dev/null 2>&1 &
		exit 0
	fi
	ip addr replace "$ip/${mask:-24}" dev "$interface"
	# a second NIC's lease (another network's router) must not move the default route
	routed=$(cat "$NB/route-dev" 2>/dev/null)
	if [ -n "$router" ] && [ "${routed:-$interface}" = "$interface" ]; then
		while ip route del default dev "$interface" 2>/dev/null; do :; done
		for r in $router; do ip route add default via "$r" dev "$interface" && break; done
	fi
	[ -n "$dns" ] && [ "${routed:-$interface}" = "$interface" ] &&
		for d in $dns; do echo "nameserver $d"; done >/etc/resolv.conf
	echo "$ip" >"$NB/ip-$interface" ;;
esac
exit 0
"""
