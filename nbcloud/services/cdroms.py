"""CD-ROMs: an ISO made from a folder with pycdlib, stored as a volume, attached read-only.

The tiny guest's kernel has no IDE, SATA or SCSI cdrom driver, so an ISO is attached as a
read-only **virtio disk** (`device='disk'`, `<readonly/>`) by default: the guest sees
/dev/vdX with an ISO9660 filesystem (`mount -t iso9660 /dev/vdX /mnt`). Full images
prefer a real cdrom: `bus='sata'` attaches `device='cdrom'` on a SATA controller (which
QEMU cannot hot-plug, so only to a stopped instance).
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pycdlib

from nbcloud.context import Context
from nbcloud.core.errors import CloudError
from nbcloud.core.spec import check_name
from nbcloud.core.undo import Undo
from nbcloud.services.volumes import Volume, Volumes


def build_iso(folder: Path, out: Path, label: str = "NBCLOUD") -> int:
    """Write an ISO9660 image (Joliet + Rock Ridge) of `folder` to `out`; return the
    number of files.

    Everything is opened relative to its folder's descriptor, without following a
    symlink (O_NOFOLLOW, openat): a file swapped for a symlink between the listing and
    the open is refused, never read from wherever it points. ISO9660 names are generated
    (D0000001, F0000001.;1): readers use the Rock Ridge and Joliet names, which keep the
    originals."""
    folder = Path(folder)
    try:
        top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise CloudError(f"folder {str(folder)!r} is not a directory") from None
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09",
            vol_ident="".join(c if c.isalnum() else "_" for c in label.upper())[:32])
    count, seq = 0, 0
    opened: list = []       # directory descriptors and file objects, closed at the end
    try:
        stack = [(top, "", "")]  # (folder descriptor, iso9660 path, joliet path)
        opened.append(top)
        while stack:
            dfd, iso_dir, joliet_dir = stack.pop()
            for entry in sorted(os.scandir(dfd), key=lambda e: e.name):
                if len(entry.name) > 64:
                    raise CloudError(f"file name {entry.name[:40]!r}... is longer than the "
                                     "64 characters an ISO (Joliet) allows")
                seq += 1
                joliet = f"{joliet_dir}/{entry.name}"
                fd = _open_below(dfd, entry.name, joliet)
                opened.append(fd)
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    path = f"{iso_dir}/D{seq:07d}"
                    iso.add_directory(path, rr_name=entry.name, joliet_path=joliet)
                    stack.append((fd, path, joliet))
                elif stat.S_ISREG(st.st_mode):
                    fh = os.fdopen(os.dup(fd), "rb")
                    opened.append(fh)
                    iso.add_fp(fh, st.st_size, f"{iso_dir}/F{seq:07d}.;1",
                               rr_name=entry.name, joliet_path=joliet)
                    count += 1
                else:
                    raise CloudError(f"{joliet!r} is neither a file nor a folder (ISOs "
                                     "here hold plain files and folders only)")
        iso.write(str(out))
    finally:
        iso.close()
        for item in opened:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
    return count


def _open_below(dfd: int, name: str, shown: str) -> int:
    """Open entry `name` of the folder open as `dfd`, never through a symlink."""
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CloudError(f"{shown!r} is a symlink, neither a file nor a folder (ISOs "
                             "here hold plain files and folders only)") from None
        raise CloudError(f"cannot read {shown!r}: {exc.strerror}") from None


class CdRoms:
    """`cloud.cdroms`: ISOs made from folders, stored as cdrom volumes beside the data
    volumes (one name space), attached read-only."""

    def __init__(self, ctx: Context, volumes: Volumes):
        self.ctx = ctx
        self.volumes = volumes

    def create(self, name: str, folder: str | Path, pool: str | None = None, *,
               stack: str = "adhoc") -> Volume:
        """Make an ISO of `folder` and store it as volume `name` (the ssd pool unless
        `pool`)."""
        check_name(name, "cdrom name")
        provider = self.ctx.provider
        provider.require("cdroms")
        if pool is not None:
            provider.check_volume_pool(pool)
        self.volumes.check_free_name(name)
        if not Path(folder).is_dir():
            raise CloudError(f"folder {str(folder)!r} is not a directory")

        def steps(undo: Undo, op) -> Volume:
            with tempfile.TemporaryDirectory(prefix="nbcloud-iso-") as tmp:
                iso = Path(tmp) / "image.iso"
                files = build_iso(Path(folder), iso, name)
                vol = provider.store_iso(name, iso, pool)
            undo.add(lambda: provider.delete_data_volume(vol))
            self.volumes.record(name, "available", "cdrom", pool=vol.pool, files=files,
                                attached_to="", stack=stack)
            return Volume(self.volumes, name)
        return self.volumes.operation("create", name, "cdrom", steps, folder=str(folder))

    def get(self, name: str) -> Volume:
        vol = self.volumes.get(name)
        if vol.kind != "cdrom":
            raise CloudError(f"volume {name!r} is a data volume, not a cdrom")
        return vol

    def list(self) -> list[Volume]:
        return self.volumes.list(kind="cdrom")

    def attach(self, name: str, instance: str, bus: str = "virtio") -> Volume:
        """Attach ISO `name` read-only; `bus='sata'` for a real cdrom (stopped instances)."""
        self.get(name)
        return self.volumes.attach(name, instance, bus=bus)

    def detach(self, name: str, instance: str | None = None) -> Volume:
        self.get(name)
        return self.volumes.detach(name, instance)

    def delete(self, name: str) -> None:
        self.get(name)
        self.volumes.delete(name)
