"""Warm clones: instances restored from a booted, saved *base* instead of cold-booted.

A base is made once per image and shape (vCPUs, memory): the image boots with `nbwarm=1`,
its init stops before anything that makes an instance itself (tiny_init.sh) and waits on
a virtio console, and the guest is saved there. Its RAM is a file on tmpfs, mapped
shared (`memory-backend-file,share=on`) and left out of the save by QEMU's
`x-ignore-shared` migration capability, so the save image holds device state only
(< 1 MiB). Each clone maps that file *private* (copy-on-write: the pages it does not write
stay shared with every other clone), is created paused with `-incoming defer` under its
own name, UUID, MAC, disks and console, gets the base's device state through a pipe
(QMP `getfd`, `migrate-incoming fd:`), resumes, and is told who it is on its console
(images/clone_identity.py): hostname, addresses, the pinned host key, login keys,
user-data, and a seed that reseeds its CRNG before anything forks.

libvirt's own restore cannot do this: a changed XML (`dxml`) may not change the name, UUID
or MAC ("does not match source"), and it offers no moment between QEMU's start and the
stream to set `x-ignore-shared`, which QEMU 7.2 has no `-global` for. So the clone is
driven over QMP (libvirt marks such domains `custom-argv`/`custom-monitor`).

What must stay as in the base, or the stream is refused (or, for the CPU model, silently
wrong): memory size, vCPUs, machine type, CPU model, the device set and its PCI slots.
Hence the staleness key (`base_key`): the image's build, the base's domain XML with
placeholders for what a clone changes, QEMU's and libvirt's versions and the QEMU
binary's identity, and the RAM file's existence (tmpfs is empty after a host restart).
Any difference: the instance boots cold, and a new base is built for the next ones.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libvirt
import libvirt_qemu

from nbcloud.core.errors import CloudError
from nbcloud.images.clone_identity import PROTOCOL
from nbcloud.providers.libvirt import accel, tapguard
from nbcloud.providers.libvirt import xml as lx
from nbcloud.providers.libvirt.clone_domain import (
    base_domain_xml,
    clone_domain_xml,
    guardable,
    handshake,
    qmp,
)
from nbcloud.providers.libvirt.local import is_local
from nbcloud.providers.libvirt.saveimage import SaveImage
from nbcloud.providers.types import USER_NETWORK, CloneCheck, Image

MARKER = b"nbcloud-warm-waiting"   # the base's init, just before it reads its identity
BASE_TIMEOUT = 180.0               # boot of a base to its marker, under TCG and load
IGNORE_SHARED = [{"capability": "x-ignore-shared", "state": True}]
# what each part of the staleness key is, in the words of a cold boot's reason
KEY_WORDS = {"protocol": "clone protocol", "image": "image build",
             "domain": "domain definition (flavor, CPU model, devices)", "qemu": "QEMU",
             "libvirt": "libvirt", "qemu_binary": "QEMU binary"}


def shape(image: Image, flavor) -> str:
    """The base's label: image and shape ("tiny-1c-128m")."""
    return f"{image.name}-{flavor.vcpus}c-{flavor.memory >> 20}m"


def describe(image: Image, flavor) -> str:
    return f"{image.name} at {flavor.vcpus} vCPU, {flavor.memory >> 20} MiB"


@dataclass(frozen=True)
class Base:
    """A fresh base: its saved state and the MAC its NIC had."""
    label: str
    save: SaveImage
    stream: bytes = b""
    mac: str = ""


class CloneMixin:
    """Warm clones of `LibvirtProvider` (see providers/base.py, Clones)."""

    conn: libvirt.virConnect
    uri: str
    paths: dict[str, Path]
    is_test_driver: bool

    # ----- where bases live ------------------------------------------------------------
    def _warm_dir(self, *parts: str) -> Path:
        return Path(self.paths["warm"], *parts)

    def _ram_dir(self) -> Path:
        return Path(self.paths["warm_ram"])

    def clone_socket(self, name: str) -> Path:
        """Where clone `name` hears its identity (gone once it has)."""
        return self._warm_dir("sock", f"{name}.sock")

    @contextmanager
    def _base_lock(self, label: str):
        """One builder of a base at a time, across processes."""
        self._warm_dir().mkdir(mode=0o711, parents=True, exist_ok=True)
        with open(self._warm_dir(f"{label}.lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _caps(self) -> ET.Element:
        if getattr(self, "_caps_root", None) is None:
            self._caps_root = ET.fromstring(self.conn.getCapabilities())
        return self._caps_root

    def _qemu_owner(self) -> tuple[int, int]:
        """uid, gid QEMU runs as (libvirt's DAC base label); (0, 0) if it has none."""
        for model in self._caps().findall("host/secmodel"):
            if model.findtext("model") == "dac":
                for label in model.findall("baselabel"):
                    if label.get("type") == "qemu" and label.text:
                        uid, _, gid = label.text.replace("+", "").partition(":")
                        return int(uid), int(gid)
        return 0, 0

    def _emulator(self) -> str:
        for guest in self._caps().findall("guest"):
            arch = guest.find("arch")
            if arch is not None and arch.get("name") == "x86_64":
                return arch.findtext("emulator", "")
        return ""

    # ----- staleness -------------------------------------------------------------------
    def base_key(self, image: Image, flavor) -> dict[str, str]:
        """What a base of `image` at `flavor`'s shape depends on (see the top)."""
        domain_type = accel.domain_type(self.accelerator()["accelerator"])
        xml = base_domain_xml(image, flavor, domain_type, name="NAME", mac="52:54:00:00:00:00",
                              network="NET", disk="DISK", log="LOG", sock="SOCK", ram="RAM")
        emulator = self._emulator()
        st = os.stat(emulator) if emulator and os.path.exists(emulator) else None
        return {"protocol": image.warm, "image": image.digest,
                "domain": hashlib.sha256(xml.encode()).hexdigest()[:16],
                "qemu": str(self.conn.getVersion()), "libvirt": str(self.conn.getLibVersion()),
                "qemu_binary": f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}" if st else ""}

    def _fresh_base(self, image: Image, flavor) -> Base | str:
        """The fresh base of `image` at `flavor`'s shape, or why there is none."""
        label, what = shape(image, flavor), describe(image, flavor)
        try:
            record = json.loads(self._warm_dir(f"{label}.json").read_text())
        except (OSError, ValueError):
            return f"no warm base for {what} yet"
        key = self.base_key(image, flavor)
        changed = [KEY_WORDS.get(k, k) for k in sorted(key.keys() | record["key"].keys())
                   if key.get(k) != record["key"].get(k)]
        if changed:
            return f"the warm base of {what} was made with another {', '.join(changed)}"
        save, ram = Path(record["save"]), Path(record["ram"])
        if not ram.exists():
            return f"the memory file of the warm base of {what} is gone (host restarted?)"
        try:
            stamp = save.stat().st_mtime_ns
        except OSError:
            return f"the saved state of the warm base of {what} is gone"
        cache = self.__dict__.setdefault("_bases", {})
        if cache.get(label, (None,))[0] != (save, stamp):
            image_ = SaveImage.read(save)
            mac = ET.fromstring(image_.xml).find("devices/interface/mac").get("address")
            cache[label] = ((save, stamp), Base(label, image_, image_.stream(), mac))
        return cache[label][1]

    def clone_check(self, image: Image, flavor, networks: tuple[str, ...],
                    screen: bool = False, shares: tuple = ()) -> CloneCheck:
        """Whether an instance of this kind can be a warm clone now, and if not, why
        (and whether only the base is missing: then building it helps)."""
        why = self._clone_obstacle(image, flavor, networks, screen, shares)
        if why:
            return CloneCheck(False, why, False)
        found = self._fresh_base(image, flavor)
        if isinstance(found, str):
            return CloneCheck(False, found, True)
        return CloneCheck(True, "", False)

    def _clone_obstacle(self, image: Image, flavor, networks, screen, shares) -> str:
        if self.is_test_driver or not self.uri.startswith("qemu:///system") \
                or not is_local(self.uri) or "warm" not in self.paths:
            return "clones need the local system daemon (qemu:///system)"
        if image.warm != PROTOCOL:
            return (f"image {image.name!r} has no warm-clone support (a tiny image built "
                    "by this nbcloud has: `nbcloud image build tiny`)")
        if len(networks) != 1 or networks[0] == USER_NETWORK:
            return "a clone has exactly one NIC, on a libvirt network"
        if screen:
            return "a screen is a device the warm base does not have"
        if shares:
            return "synced folders need memory of their own"
        if flavor.local_disk:
            return "a storage flavor's local disk is a device the warm base does not have"
        if self.accelerator()["accelerator"] != "tcg":
            return "clones are made under software emulation only (not tried under KVM)"
        return ""

    # ----- building a base ---------------------------------------------------------------
    def warm_base(self, image: Image, flavor, network: str, progress=None) -> str:
        """Make sure a fresh base of `image` at `flavor`'s shape exists (built on
        `network` if not); one line saying what was done. `progress(step, steps, what)`
        hears the build's stages."""
        why = self._clone_obstacle(image, flavor, (network,), False, ())
        if why:
            raise CloudError(f"no warm base for {describe(image, flavor)}: {why}")
        label = shape(image, flavor)
        with self._base_lock(label):
            found = self._fresh_base(image, flavor)
            if not isinstance(found, str):
                return f"the warm base of {describe(image, flavor)} is fresh"
            return self._build_base(image, flavor, network, label, progress or _quiet)

    def _build_base(self, image: Image, flavor, network: str, label: str, progress) -> str:
        key = self.base_key(image, flavor)
        bid = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        name = f"nbcloud-warm-{bid}"
        ram, save = self._ram_dir() / f"{label}-{bid}.ram", self._warm_dir(f"{label}-{bid}.save")
        scratch = [self._warm_dir(f"{name}{s}") for s in (".qcow2", ".console.log", ".sock")]
        self._ram_dir().mkdir(mode=0o711, parents=True, exist_ok=True)
        try:   # a build whose process died left its base running
            self.conn.lookupByName(name).destroy()
        except libvirt.libvirtError:
            pass
        for f in (ram, save, *scratch):
            f.unlink(missing_ok=True)
        progress(0, 3, "booting the base")
        start = time.monotonic()
        try:
            fd = os.open(ram, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:   # QEMU opens it read-write even to map it private: it is QEMU's file
                os.ftruncate(fd, flavor.memory)
                os.fchown(fd, *self._qemu_owner())
            finally:
                os.close(fd)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(scratch[0]), "1G"],
                           check=True, capture_output=True, timeout=60)
            xml = base_domain_xml(
                image, flavor, accel.domain_type(self.accelerator()["accelerator"]),
                name=name, mac=self.random_mac(), network=network, disk=str(scratch[0]),
                log=str(scratch[1]), sock=str(scratch[2]), ram=str(ram))
            booted = self._boot_and_save(name, xml, scratch[1], save, progress)
            SaveImage.read(save)
            os.chmod(save, 0o600)
            record = {"key": key, "id": bid, "save": str(save), "ram": str(ram),
                      "built": int(time.time())}
            tmp = self._warm_dir(f".{label}.json.tmp")
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, self._warm_dir(f"{label}.json"))
        except BaseException as exc:
            ram.unlink(missing_ok=True)
            save.unlink(missing_ok=True)
            if isinstance(exc, (OSError, subprocess.SubprocessError)):
                raise CloudError(f"the warm base of {describe(image, flavor)} was not "
                                 f"made: {exc}") from None
            raise
        finally:
            for f in scratch:
                f.unlink(missing_ok=True)
        self._drop_files(label, keep=bid)
        took = time.monotonic() - start
        progress(3, 3, f"ready in {took:.1f} s")
        return (f"built the warm base of {describe(image, flavor)} in {took:.1f} s (boot "
                f"{booted:.1f} s, save {took - booted:.1f} s)")

    def _boot_and_save(self, name: str, xml: str, log: Path, save: Path, progress) -> float:
        """Start the base, wait for its init to wait, save it; seconds to the wait."""
        start = time.monotonic()
        try:
            dom = self.conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise CloudError(f"the warm base did not start: {exc.get_error_message()}") \
                from None
        try:
            qmp(dom, "migrate-set-capabilities", capabilities=IGNORE_SHARED)
            while MARKER not in (log.read_bytes() if log.exists() else b""):
                if time.monotonic() - start > BASE_TIMEOUT or not dom.isActive():
                    raise CloudError(f"the warm base did not reach its wait within "
                                     f"{BASE_TIMEOUT:.0f} s")
                time.sleep(0.05)
            booted = time.monotonic() - start
            time.sleep(0.2)   # the marker is its last word before the read
            progress(1, 3, "saving its state")
            dom.save(str(save))
            progress(2, 3, "checking it")
            return booted
        except BaseException as exc:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
            if isinstance(exc, libvirt.libvirtError):
                raise CloudError(f"the warm base was not saved: "
                                 f"{exc.get_error_message()}") from None
            raise

    def _drop_files(self, label: str, keep: str = "") -> list[str]:
        """Remove the saved states and RAM files of `label` but `keep`'s (running clones
        keep an unlinked RAM file's pages until they stop)."""
        ours = re.compile(rf"{re.escape(label)}-([0-9a-f]{{12}})\.(save|ram)")
        gone = []
        for f in [*self._warm_dir().glob("*.save"), *self._ram_dir().glob("*.ram")]:
            found = ours.fullmatch(f.name)
            if found and found.group(1) != keep:
                f.unlink(missing_ok=True)
                gone.append(f.name)
        return gone

    def drop_warm_bases(self, image: str) -> list[str]:
        """Remove every base of image `image` (it was deleted or rebuilt)."""
        if "warm" not in self.paths or not self._warm_dir().is_dir():
            return []
        ours = re.compile(rf"{re.escape(image)}-\d+c-\d+m")
        gone = []
        for record in self._warm_dir().glob("*.json"):
            label = record.stem
            if not ours.fullmatch(label):
                continue
            with self._base_lock(label):
                record.unlink(missing_ok=True)
                gone += self._drop_files(label)
            self.__dict__.get("_bases", {}).pop(label, None)
        return gone

    # ----- a clone -----------------------------------------------------------------------
    def restore_clone(self, name: str, base: Base) -> libvirt.virDomain:
        """Start defined instance `name` as a clone of `base`, running, its identity not
        yet told. The domain stays defined as a cold instance: a stop and start, or any
        failure here, leaves it that."""
        sock = self.clone_socket(name)
        sock.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        own = self._lookup(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        guard = guardable(own) if tapguard.usable() else None
        dom = self._create_paused(base, own, sock, guard)
        r, w = os.pipe()
        try:
            qmp(dom, "migrate-set-capabilities", capabilities=IGNORE_SHARED)
            # the stream goes through a pipe handed over with getfd: no file for QEMU to
            # open, so file modes and security drivers have nothing to refuse
            libvirt_qemu.qemuMonitorCommandWithFiles(
                dom, json.dumps({"execute": "getfd", "arguments": {"fdname": "nbcmig"}}), [r])
            os.close(r)
            r = -1
            qmp(dom, "migrate-incoming", uri="fd:nbcmig")
            with os.fdopen(w, "wb") as pipe:
                w = -1
                pipe.write(base.stream)
            deadline = time.monotonic() + 60
            while (status := qmp(dom, "query-migrate")["return"].get("status")) != "completed":
                if status == "failed" or time.monotonic() > deadline:
                    raise CloudError(f"QEMU did not take the base's state ({status})")
                time.sleep(0.005)
            # off again: a later savevm (a snapshot) must be loadable by a plain QEMU
            qmp(dom, "migrate-set-capabilities",
                capabilities=[{**IGNORE_SHARED[0], "state": False}])
            dom.resume()
        except BaseException as exc:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
            sock.unlink(missing_ok=True)
            if guard is not None:
                tapguard.forget(guard[0])
            if isinstance(exc, (libvirt.libvirtError, OSError)):
                raise CloudError(f"the restore failed: {exc}") from None
            raise
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
        return dom

    def _create_paused(self, base: Base, own: str, sock: Path,
                       guard: tuple[str, str, str] | None) -> libvirt.virDomain:
        """The clone's QEMU, paused, its state not loaded: its tap guarded by nbcloud
        where `guard` (tap, MAC, address) says it can be, else filtered by libvirt."""
        if guard is not None:
            dom = self._create_guarded(base, own, sock, guard)
            if dom is not None:
                return dom
        try:
            return self.conn.createXML(clone_domain_xml(base.save.xml, own, str(sock)),
                                       libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            raise CloudError(f"QEMU did not start: {exc.get_error_message()}") from None

    def _create_guarded(self, base: Base, own: str, sock: Path,
                        guard: tuple[str, str, str]) -> libvirt.virDomain | None:
        """The clone's QEMU on tap `guard[0]` with no libvirt filter, its anti-spoofing
        rules made (tapguard.py) before a single instruction of the guest runs. None,
        with nothing of it left, where that cannot be: the tap is not in this process's
        network namespace (the rules would guard nothing), or nft refused."""
        tap = guard[0]
        try:
            dom = self.conn.createXML(clone_domain_xml(base.save.xml, own, str(sock), tap),
                                      libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError:
            return None
        try:
            if not tapguard.visible(tap):
                raise tapguard.GuardError("the tap is in another network namespace")
            tapguard.guard(*guard)
            return dom
        except BaseException as exc:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
            tapguard.forget(tap)
            if isinstance(exc, tapguard.GuardError):
                return None
            raise

    def start_clone(self, name: str, base: Base, message: bytes, seed: str) -> str:
        """The first start of instance `name` as a clone of `base`: restored, told its
        identity (`message`), its seed disk plugged in (the guest sees it as vdb, as a
        cold boot would). Returns "cloned (how long each took)", or, where the clone
        failed, "cold (why)" after a cold start."""
        start = time.monotonic()
        try:
            dom = self.restore_clone(name, base)
        except CloudError as exc:
            self.forget_base(base.label)
            return self._cold_instead(name, f"the clone did not restore: {exc}")
        restored = time.monotonic()
        try:
            handshake(self.clone_socket(name), message)
        except (OSError, TimeoutError) as exc:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
            tapguard.forget(tapguard.tap_name(dom.UUIDString()))
            return self._cold_instead(name, f"the clone did not take its identity: {exc}")
        finally:
            self.clone_socket(name).unlink(missing_ok=True)
        ready = time.monotonic()
        try:
            dom.attachDeviceFlags(lx.disk_xml(lx.DataDisk(seed, "vdb", fmt="raw",
                                                          readonly=True)),
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            return f"cloned (its seed disk shows at its next boot: {exc.get_error_message()})"
        # for the operations log: where a clone's start goes
        return (f"cloned (restored in {restored - start:.2f} s, ready "
                f"{ready - restored:.2f} s later)")

    def _cold_instead(self, name: str, why: str) -> str:
        boot = f"cold ({why})"
        self.set_metadata(name, {**self.metadata(name), "boot": boot})
        self.start(name)
        return boot

    def forget_base(self, label: str) -> None:
        """A base whose clones do not restore is no base: the next create builds anew."""
        with self._base_lock(label):
            self._warm_dir(f"{label}.json").unlink(missing_ok=True)
            self._drop_files(label)
        self.__dict__.get("_bases", {}).pop(label, None)


def _quiet(_step: int, _steps: int, _what: str) -> None:
    pass
