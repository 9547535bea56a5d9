"""Synced folders and the shell provisioner (the Vagrant habits).

A synced folder is a host folder shared into the instance with virtiofs: libvirt starts a
virtiofsd per folder, which needs the guest's memory shared (memfd), and the guest mounts
it by tag. virtiofs rather than 9p because the Debian cloud kernel that the tiny image (and
the Debian image) boots has no 9p at all (CONFIG_NET_9P is not set) while it has virtiofs
as a module; the tiny image carries virtiofs.ko and fuse.ko without loading them at boot.

The mount, and the provisioner, travel in the instance's user-data as one `#!/bin/sh`
script, so they run on every boot of the tiny image (it keeps no state) and on the first
boot of a cloud-init image, as cloud-init's final stage runs scripts. The provisioner's
output goes to /var/log/nbcloud-provision.log in the guest; `provision_log` reads it
back and records it in the operations log. `provision` runs a script on demand over SSH.
"""
from __future__ import annotations

import base64
import html
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbcloud.context import Context
from nbcloud.core import config
from nbcloud.core.errors import CloudError, HostError, InvalidSpec
from nbcloud.core.spec import check_name, check_path, sync_tag

LOG = "/var/log/nbcloud-provision.log"
SCRIPT = "/var/lib/nbcloud/provision"
DONE = "nbcloud-provision-done rc="
_GUEST_DIR = re.compile(r"^/[A-Za-z0-9._/-]{0,200}$")
# mounting over these would break the guest (or hide its login keys)
_RESERVED = ("/", "/bin", "/sbin", "/lib", "/usr", "/etc", "/dev", "/proc", "/sys", "/run",
             "/root", "/root/.ssh", "/var", "/init", "/tmp")
VIRTIOFSD = ("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd")
# Host folders no synced folder may be, be inside or hold: virtiofsd serves a folder to
# the guest as root, read and write (passthrough), so the guest could read the host's
# secrets or rewrite what it runs. nbcloud's own folder (config.home(): its private keys
# and inventory; also the default one when NBCLOUD_HOME points elsewhere) and the user's
# ~/.ssh are added when checked.
_HOST_SYSTEM = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
                "/proc", "/root/.ssh", "/run", "/sbin", "/sys", "/usr", "/var/backups",
                "/var/cache", "/var/lib", "/var/log", "/var/mail", "/var/spool")


@dataclass(frozen=True)
class SyncedFolder:
    host_dir: str
    guest_dir: str
    tag: str

    def __repr__(self) -> str:
        return f"<SyncedFolder {self.host_dir} -> {self.guest_dir} (virtiofs {self.tag})>"

    def _repr_html_(self) -> str:
        return (f"<b>synced folder</b> {html.escape(self.host_dir)} &rarr; "
                f"{html.escape(self.guest_dir)}")


def parse_sync(value: str | tuple[str, str], index: int = 0) -> SyncedFolder:
    """'HOSTDIR:GUESTDIR' (or a pair) -> SyncedFolder; refuses `..`, a host folder that
    does not exist, and guest folders the guest needs for itself."""
    if isinstance(value, str):
        host, sep, guest = value.rpartition(":")
        if not sep or not host or not guest:
            raise InvalidSpec(f"sync {value!r:.60} is not HOSTDIR:GUESTDIR, like "
                              "./site:/srv/site")
    else:
        host, guest = value
    check_path(host, "sync host folder")
    check_path(PurePosixPath(guest), "sync guest folder")
    if not _GUEST_DIR.fullmatch(guest) or "//" in guest:
        raise InvalidSpec(f"guest folder {guest!r:.60} is not allowed: use an absolute path "
                          "of letters, digits, '.', '_', '-' and '/'")
    guest = str(PurePosixPath(guest))
    if guest in _RESERVED:
        raise InvalidSpec(f"guest folder {guest} is the guest's own: pick another, like "
                          "/srv/data or /mnt/host")
    host_path = Path(host).expanduser().absolute()
    if not host_path.is_dir():
        raise InvalidSpec(f"host folder {host} does not exist (or is not a folder): "
                          "create it first")
    return SyncedFolder(str(check_host_folder(host_path, host)), guest, sync_tag(index))


def _protected() -> set[Path]:
    folders = [*_HOST_SYSTEM, config.home(), Path.home() / ".local/share/nbcloud",
               Path.home() / ".ssh"]
    return {Path(os.path.realpath(p)) for p in folders}


def check_host_folder(path: Path, shown: str) -> Path:
    """The real path of host folder `path` (symlinks resolved: that is what libvirt
    gets), unless it is, is inside or holds a protected folder (`_HOST_SYSTEM`,
    nbcloud's own, ~/.ssh)."""
    real = Path(os.path.realpath(path))
    for p in sorted(_protected()):
        how = "is" if real == p else "is inside" if p in real.parents else \
            "holds" if real in p.parents else ""
        if how:
            raise InvalidSpec(f"host folder {shown} {how} {p}: virtiofsd serves a synced "
                              "folder to the guest as root, read and write; share a folder "
                              "of its own, like ./site")
    return real


def parse_syncs(values) -> tuple[SyncedFolder, ...]:
    folders = tuple(parse_sync(v, i) for i, v in enumerate(values or ()))
    guests = [f.guest_dir for f in folders]
    if len(set(guests)) != len(guests):
        raise InvalidSpec("two synced folders have the same guest folder")
    return folders


def _embedded(script: str, path: str) -> str:
    """Shell lines that write `script` to `path` (base64: no quoting can go wrong)."""
    b64 = base64.b64encode(script.encode()).decode()
    lines = [b64[i:i + 76] for i in range(0, len(b64), 76)]
    return (f"mkdir -p {shlex.quote(str(PurePosixPath(path).parent))}\n"
            f"base64 -d > {shlex.quote(path)} <<'NBCLOUD_B64'\n" + "\n".join(lines)
            + f"\nNBCLOUD_B64\nchmod 700 {shlex.quote(path)}\n")


def _run_line(script: str, path: str, log: str) -> str:
    runner = path if script.startswith("#!") else f"sh {path}"
    return (f"{runner} >> {log} 2>&1; rc=$?\n"
            f"echo \"{DONE}$rc\" >> {log}\n")


def user_data(folders: tuple[SyncedFolder, ...], provision: str | None,
              theirs: str | None) -> str | None:
    """The user-data of an instance with synced folders and/or a provisioner: one shell
    script (mounts, the user's own `#!` user-data, then the provisioner); `theirs` alone
    when there is neither."""
    if not folders and provision is None:
        return theirs
    if theirs is not None and not theirs.lstrip().startswith("#!"):
        raise InvalidSpec("with --sync or --provision, --user-data must be a '#!' script "
                          "(a #cloud-config cannot be combined with them yet)")
    if provision is not None and not provision.strip():
        raise InvalidSpec("the provisioner script is empty")
    out = ["#!/bin/sh", "# nbcloud: synced folders, user-data, provisioner"]
    if folders:
        out.append("modprobe virtiofs 2>/dev/null")
    for f in folders:
        g = shlex.quote(f.guest_dir)
        out.append(f"mkdir -p {g} && mount -t virtiofs {f.tag} {g} || "
                   f"echo 'nbcloud: mounting {f.tag} on {f.guest_dir} failed'")
    text = "\n".join(out) + "\n"
    if theirs is not None:
        theirs = theirs.lstrip()
        text += _embedded(theirs, "/var/lib/nbcloud/user-data")
        runner = "/var/lib/nbcloud/user-data"
        text += f"{runner}\n"
    if provision is not None:
        text += _embedded(provision, SCRIPT) + _run_line(provision, SCRIPT, LOG)
    return text


@dataclass(frozen=True)
class ProvisionResult:
    instance: str
    returncode: int
    output: str

    def __repr__(self) -> str:
        return f"<Provision {self.instance} rc={self.returncode}>\n{self.output}"

    def _repr_html_(self) -> str:
        return (f"<b>provisioner</b> on {html.escape(self.instance)}: exit status "
                f"{self.returncode}<pre>{html.escape(self.output)}</pre>")


class Folders:
    """`cloud.sync`: synced folders of instances, and the provisioner run on demand.

    The methods that run something in the guest take the instance's handle (anything with
    `name` and `ssh_result`), so this service needs no other."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def check_host(self, folders: tuple[SyncedFolder, ...]) -> None:
        """virtiofs needs virtiofsd on the host (libvirt starts it), and a local daemon."""
        uri = self.ctx.uri
        if not folders or uri.startswith("test:"):
            return
        if not uri.startswith(("qemu:///system", "qemu+unix:///system")):
            raise HostError("synced folders need qemu:///system on this machine (virtiofsd "
                            "runs as root beside the daemon)")
        if not any(os.path.exists(p) for p in VIRTIOFSD):
            raise HostError("synced folders need virtiofsd: `apt-get install virtiofsd` "
                            "(Debian 12's qemu-system-common ships /usr/lib/qemu/virtiofsd)")

    user_data = staticmethod(user_data)

    def folders(self, instance: str) -> list[SyncedFolder]:
        """The virtiofs folders of `instance`, as the provider has them, with the guest
        folder its first-boot script mounts them on."""
        check_name(instance, "instance name")  # before the provider hears it
        guest = self._guest_dirs(instance)
        return [SyncedFolder(host, guest.get(tag, "?"), tag)
                for host, tag in self.ctx.provider.shared_folders(instance)]

    def _guest_dirs(self, instance: str) -> dict[str, str]:
        res = self.ctx.inventory.get("instance", instance)
        return dict(res.spec.get("sync", {})) if res is not None else {}

    def record(self, instance: str, folders: tuple[SyncedFolder, ...]) -> None:
        """Keep tag -> guest folder in the instance's inventory spec."""
        if not folders:
            return
        self.ctx.inventory.update(
            "instance", instance,
            lambda res: None if res is None else
            {**res.spec, "sync": {f.tag: f.guest_dir for f in folders}})

    def wait_mounted(self, inst, folders: tuple[SyncedFolder, ...],
                     timeout: float = 60.0) -> None:
        """Until every folder is mounted in the guest (its script runs after SSH is up)."""
        if not folders:
            return
        test = " && ".join(f"grep -q ' {shlex.quote(f.guest_dir)} virtiofs ' /proc/mounts"
                           for f in folders)
        deadline = time.monotonic() + timeout
        while True:
            if inst.ssh_result(test, check=False, timeout=30).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise CloudError(f"instance {inst.name!r}: synced folders not mounted within "
                                 f"{timeout:.0f} s (see its console for 'nbcloud: mounting')")
            time.sleep(0.3)

    def provision(self, inst, script: str, timeout: float = 600.0) -> ProvisionResult:
        """Run `script` in instance `inst` now, over SSH; its output is returned and
        recorded in the operations log."""
        if not script.strip():
            raise InvalidSpec("the provisioner script is empty")
        path = "/var/lib/nbcloud/provision-now"
        command = _embedded(script, path) + \
            (path if script.startswith("#!") else f"sh {path}") + " 2>&1"
        with self.ctx.inventory.operation("provision", "instance", inst.name) as op:
            r = inst.ssh_result(command, check=False, timeout=timeout)
            op.detail = f"rc={r.returncode}\n{r.stdout[-4000:]}"
        return ProvisionResult(inst.name, r.returncode, r.stdout)

    def provision_log(self, inst, wait: float = 0.0) -> ProvisionResult:
        """The first-boot provisioner's output of instance `inst` (waiting up to `wait` s
        for it to finish), recorded in the operations log."""
        deadline = time.monotonic() + wait
        while True:
            text = inst.ssh_result(f"cat {LOG}", check=False, timeout=30).stdout
            if DONE in text or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if DONE not in text:
            raise CloudError(f"instance {inst.name!r}: the provisioner has not finished "
                             f"(or there is none): {LOG} has no '{DONE}' line")
        body, _, rest = text.rpartition(DONE)
        rc = int(rest.split()[0]) if rest.split() else -1
        with self.ctx.inventory.operation("provision log", "instance", inst.name) as op:
            op.detail = f"rc={rc}\n{body[-4000:]}"
        return ProvisionResult(inst.name, rc, body)
