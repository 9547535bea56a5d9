"""Images on OpenStack: Glance images of this project (and public ones), by name.

A kernel-boot image (nbcloud's tiny image) is three Glance images: NAME-kernel,
NAME-initrd and NAME, which names the other two by `kernel_id` / `ramdisk_id` and carries
the kernel command line (`os_command_line`); a 1 MiB empty raw disk stands in for the root,
as the tiny image runs from its initramfs. All three are `raw`: Nova's image format
inspector refuses aki/ari/ami whose content it cannot match. nbcloud's digest of what it
built is the property `nbcloud_digest`, so an unchanged image is not uploaded again.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.spec import check_name
from nbcloud.providers.types import Image

KERNEL, INITRD = "-kernel", "-initrd"


class GlanceImages:
    """`cloud.images` on OpenStack: list, get, import, store built images, delete."""

    def __init__(self, provider):
        self.provider = provider
        self.conn = provider.conn

    def _find(self, name: str):
        found = [i for i in self.conn.image.images(name=name) if i.status == "active"]
        mine = [i for i in found if i.owner == self.provider.project_id]
        return (mine or found or [None])[0]

    def _describe(self, img) -> Image:
        props = img.properties or {}
        kernel = getattr(img, "kernel_id", None) or props.get("kernel_id")
        return Image(img.name, "kernel" if kernel else "disk",
                     props.get("nbcloud_digest", img.checksum or ""), int(img.size or 0),
                     kernel=kernel, initrd=getattr(img, "ramdisk_id", None)
                     or props.get("ramdisk_id"), cmdline=props.get("os_command_line"),
                     disk=img.id, disk_format=img.disk_format,
                     virtual_size=img.virtual_size, ref=img.id)

    def list(self) -> list[Image]:
        return sorted((self._describe(i) for i in self.conn.image.images()
                       if i.status == "active" and not i.name.endswith((KERNEL, INITRD))),
                      key=lambda i: i.name)

    def get(self, name: str) -> Image:
        check_name(name, "image name")
        img = self._find(name)
        if img is None:
            raise NotFound(f"image {name!r} does not exist on {self.provider.cloud} (see "
                           "`%cloud image list`)")
        return self._describe(img)

    def exists(self, name: str) -> bool:
        check_name(name, "image name")
        return self._find(name) is not None

    def _upload(self, name: str, path: Path, disk_format: str, **props):
        # duplicates allowed: a new version's kernel and initramfs come before the old
        # ones go (the SDK would otherwise look the name up, and refuse two)
        return self.conn.image.create_image(
            name=name, filename=str(path), disk_format=disk_format,
            container_format="bare", visibility="private", wait=True,
            allow_duplicates=True, **props)

    def put_kernel_image(self, name: str, kernel: Path, initrd: Path, cmdline: str,
                         digest: str, warm: str = "") -> Image:
        """nbcloud's tiny image (a kernel and an initramfs), unless the same is there
        (`warm` is not kept: Nova boots every server cold)."""
        check_name(name, "image name")
        tag = digest[:12]
        current = self._find(name)
        if current is not None and (current.properties or {}).get("nbcloud_digest") == tag:
            return self._describe(current)
        k = self._upload(name + KERNEL, kernel, "raw", nbcloud_digest=tag)
        r = self._upload(name + INITRD, initrd, "raw", nbcloud_digest=tag)
        with tempfile.NamedTemporaryFile(suffix=".img") as disk:
            disk.truncate(1 << 20)   # the tiny image runs from its initramfs
            disk.flush()
            self._retire(current)
            img = self._upload(name, Path(disk.name), "raw", kernel_id=k.id, ramdisk_id=r.id,
                               os_command_line=cmdline, nbcloud_digest=tag,
                               hw_machine_type="pc")   # its config drive on IDE (ata_piix)
        self._forget_old(name)
        return self._describe(img)

    def _forget_old(self, name: str) -> None:
        """Delete this project's earlier versions of `name` (and their kernel and
        initramfs) that no server boots from any more."""
        used = {(s.image or {}).get("id") for s in self.conn.compute.servers()}
        for old in self.conn.image.images(owner=self.provider.project_id):
            if old.name.startswith(f"{name}-old-") and old.id not in used:
                self._delete_with_parts(old)

    def put_disk_image(self, name: str, disk: Path, fmt: str, digest: str, *,
                       kernel: Path | None = None, initrd: Path | None = None,
                       cmdline: str | None = None) -> Image:
        """A built disk image (with its kernel and initrd for direct boot, as nbcloud's
        Debian image), unless the same digest is there."""
        check_name(name, "image name")
        tag = digest[:12]
        current = self._find(name)
        if current is not None and (current.properties or {}).get("nbcloud_digest") == tag:
            return self._describe(current)
        props = {"nbcloud_digest": tag}
        if kernel is not None and initrd is not None:
            k = self._upload(name + KERNEL, kernel, "raw", nbcloud_digest=tag)
            r = self._upload(name + INITRD, initrd, "raw", nbcloud_digest=tag)
            props.update(kernel_id=k.id, ramdisk_id=r.id, os_command_line=cmdline or "")
        self._retire(current)
        img = self._upload(name, disk, fmt, **props)
        self._forget_old(name)
        return self._describe(img)

    def _retire(self, current) -> None:
        """Rename this project's current version aside (deleted once no server uses it)."""
        if current is not None and current.owner == self.provider.project_id:
            self.conn.image.update_image(current, name=f"{current.name}-old-{current.id[:8]}")

    def import_disk(self, name: str, source: str, *, sha256: str | None = None,
                    progress=None, spool_dir: Path | None = None) -> Image:
        """Import a qcow2 or raw disk image from a local path or an http(s) URL: read
        once (format checked, checksum verified), then uploaded to Glance."""
        from nbcloud.images.importer import stream_into
        check_name(name, "image name")
        if self.exists(name):
            raise AlreadyExists(f"image {name!r} exists already: pick another name or "
                                f"delete it first (`%cloud image delete {name}`)")
        with tempfile.TemporaryDirectory(dir=spool_dir) as tmp:
            spooled: list[tuple[Path, str]] = []

            def upload(fmt: str, size: int, read) -> None:
                path = Path(tmp) / f"image.{fmt}"
                with open(path, "wb") as out:
                    while chunk := read(1 << 20):
                        out.write(chunk)
                spooled.append((path, fmt))

            got = stream_into(upload, source, sha256=sha256, progress=progress,
                              spool_dir=spool_dir)
            path, fmt = spooled[0]
            img = self._upload(name, path, fmt, nbcloud_digest=got.sha256[:12])
        return self._describe(img)

    def users(self, name: str) -> list[str]:
        return sorted(n for n, meta in self.provider.managed().items()
                      if meta.get("image") == name)

    def delete(self, name: str) -> None:
        img = self._find(name)
        if img is None:
            raise NotFound(f"image {name!r} does not exist")
        if img.owner != self.provider.project_id:
            raise CloudError(f"image {name!r} belongs to another project: nbcloud deletes "
                             "only its own")
        users = self.users(name)
        if users:
            raise CloudError(f"image {name!r} is used by {', '.join(users)}: delete them "
                             "first")
        self._delete_with_parts(img)

    def _delete_with_parts(self, img) -> None:
        """Image `img` and the kernel and initramfs it names."""
        props = img.properties or {}
        for part in (getattr(img, "kernel_id", None) or props.get("kernel_id"),
                     getattr(img, "ramdisk_id", None) or props.get("ramdisk_id")):
            if part:
                self.conn.image.delete_image(part, ignore_missing=True)
        self.conn.image.delete_image(img, ignore_missing=True)
