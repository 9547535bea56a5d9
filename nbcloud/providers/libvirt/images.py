"""The image store: images live as volumes in the `nbcloud-images` pool.

A kernel-boot image NAME is three volumes: NAME.vmlinuz, NAME.initrd and NAME.json (its
boot command line and build digest); a disk image is NAME.qcow2 (or .raw) and NAME.json.
A disk image may also carry NAME.vmlinuz and NAME.initrd (a root filesystem without a
boot loader, booted by direct kernel boot, like the Debian cloud-init image).
Keeping the description in the pool means a second machine, or a rebuilt inventory,
finds the same images.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from nbcloud.core.errors import AlreadyExists, CloudError, NotFound
from nbcloud.core.spec import check_name
from nbcloud.images.importer import ImageImportError, stream_into
from nbcloud.providers.libvirt.volumes import IMAGE_POOL
from nbcloud.providers.types import Image


class ImageStore:
    """Images in one libvirt connection's image pool."""

    def __init__(self, provider):
        self.provider = provider

    def _describe(self, name: str, volumes: dict[str, tuple[str, int]]) -> Image | None:
        meta_vol = volumes.get(f"{name}.json")
        if meta_vol is None:
            return None
        meta = json.loads(self._description(name, meta_vol[0]))
        size = sum(alloc for vol, (_, alloc) in volumes.items()
                   if vol.startswith(f"{name}."))
        if meta["kind"] == "kernel":
            return Image(name, "kernel", meta["digest"], size,
                         kernel=volumes[f"{name}.vmlinuz"][0],
                         initrd=volumes[f"{name}.initrd"][0], cmdline=meta["cmdline"],
                         warm=meta.get("warm", ""))
        fmt = meta["format"]
        kernel = volumes.get(f"{name}.vmlinuz") if meta.get("cmdline") else None
        initrd = volumes.get(f"{name}.initrd") if meta.get("cmdline") else None
        return Image(name, "disk", meta["digest"], size,
                     kernel=kernel[0] if kernel else None,
                     initrd=initrd[0] if initrd else None,
                     cmdline=meta.get("cmdline"),
                     disk=volumes[f"{name}.{fmt}"][0], disk_format=fmt,
                     virtual_size=meta.get("virtual_size"))

    def _description(self, name: str, path: str) -> str:
        """NAME.json's text: read from its file on this machine, or streamed from the
        daemon of another (its path names a file over there)."""
        from nbcloud.providers.libvirt.local import is_local
        if is_local(getattr(self.provider, "uri", "")):
            return Path(path).read_text()
        from nbcloud.providers.libvirt.transfer import read_volume
        return read_volume(self.provider, IMAGE_POOL, f"{name}.json").decode()

    def list(self) -> list[Image]:
        volumes = self.provider.volumes(IMAGE_POOL)
        names = sorted(v[:-5] for v in volumes if v.endswith(".json"))
        return [img for n in names if (img := self._describe(n, volumes))]

    def get(self, name: str) -> Image:
        check_name(name, "image name")
        image = self._describe(name, self.provider.volumes(IMAGE_POOL))
        if image is None:
            hint = "`%cloud image build tiny`" if name == "tiny" else "`%cloud image import`"
            raise NotFound(f"image {name!r} does not exist: create it with {hint}")
        return image

    def put_kernel_image(self, name: str, kernel: Path, initrd: Path, cmdline: str,
                         digest: str, warm: str = "") -> Image:
        """Store a kernel-boot image unless the same digest is there already; `warm`
        names the warm-clone protocol its init speaks (images/tiny.py)."""
        check_name(name, "image name")
        try:
            current = self.get(name)
            if current.digest == digest:
                return current
        except NotFound:
            pass
        self.provider.drop_warm_bases(name)   # made of the image it replaces
        self.provider.upload_volume(IMAGE_POOL, f"{name}.vmlinuz", kernel)
        self.provider.upload_volume(IMAGE_POOL, f"{name}.initrd", initrd)
        # The description goes last: an interrupted upload leaves no half image listed.
        self._put_meta(name, {"kind": "kernel", "cmdline": cmdline, "digest": digest,
                              **({"warm": warm} if warm else {})})
        return self.get(name)

    def exists(self, name: str) -> bool:
        """Whether NAME.json (what makes an image listed) is in the pool."""
        return f"{name}.json" in self.provider.volumes(IMAGE_POOL)

    def import_disk(self, name: str, source: str, *, sha256: str | None = None,
                    progress=None, spool_dir: Path | None = None) -> Image:
        """Import a qcow2 or raw disk image from a local path or an http(s) URL.

        Streamed into the pool; on any failure (bad source, unknown format, checksum
        mismatch, Ctrl-C) nothing is left behind."""
        check_name(name, "image name")
        if self.exists(name):
            raise AlreadyExists(f"image {name!r} exists already: pick another name or "
                                f"delete it first (`%cloud image delete {name}`)")
        stored: list[str] = []
        paths: list[str] = []

        def upload(fmt: str, size: int, read) -> None:
            vol = f"{name}.{fmt}"
            stored.append(vol)
            paths.append(self.provider.upload_volume_stream(IMAGE_POOL, vol, size, read))

        try:
            got = stream_into(upload, source, sha256=sha256, progress=progress,
                              spool_dir=spool_dir)
            vsize = self.check_stored(paths[0], got.format) or got.virtual_size or got.size
            self._put_meta(name, {"kind": "disk", "format": got.format,
                                  "digest": got.sha256, "virtual_size": vsize,
                                  "source": source})
        except BaseException:
            for vol in stored:
                self.provider.delete_volume(IMAGE_POOL, vol)
            raise
        return self.get(name)

    def put_disk_image(self, name: str, disk: Path, fmt: str, digest: str, *,
                       kernel: Path | None = None, initrd: Path | None = None,
                       cmdline: str | None = None) -> Image:
        """Store a built disk image (with kernel and initrd for direct kernel boot)
        unless the same digest is there already."""
        check_name(name, "image name")
        if self.exists(name):
            current = self.get(name)
            if current.digest == digest:
                return current
            self._in_use_check(name)
        self.provider.delete_volume(IMAGE_POOL, f"{name}.json")
        uploads = [(disk, f"{name}.{fmt}")]
        if kernel and initrd:
            uploads += [(kernel, f"{name}.vmlinuz"), (initrd, f"{name}.initrd")]
        for path, vol in uploads:
            self.provider.upload_volume(IMAGE_POOL, vol, path)
        meta = {"kind": "disk", "format": fmt, "digest": digest,
                "virtual_size": self._virtual_size(str(disk)) or disk.stat().st_size}
        if kernel and initrd:
            meta["cmdline"] = cmdline or ""
        self._put_meta(name, meta)
        return self.get(name)

    @staticmethod
    def _qemu_img_info(path: str, fmt: str | None = None) -> dict | None:
        """`qemu-img info` of `path` (None where the file is not on this machine or
        qemu-img is missing); ImageImportError where qemu-img cannot read it."""
        if not Path(path).exists() or shutil.which("qemu-img") is None:
            return None
        args = ["qemu-img", "info", "-U", "--output", "json"]
        args += ["-f", fmt] if fmt else []
        try:
            out = subprocess.run([*args, path], capture_output=True, text=True,
                                 timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ImageImportError(f"qemu-img could not read the image: {exc}") from None
        if out.returncode != 0:
            line = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ImageImportError(f"qemu-img cannot read the image, so QEMU could not "
                                   f"boot it: {line[-200:]}")
        return json.loads(out.stdout)

    @classmethod
    def check_stored(cls, path: str, fmt: str = "qcow2") -> int | None:
        """Ask `qemu-img info` again what an imported file is, after the header check
        (images/qcow2.py): a backing file, an external data file or encryption is
        refused. Returns the virtual size (None where the file is not here)."""
        info = cls._qemu_img_info(path, fmt)
        if info is None:
            return None
        data = (info.get("format-specific") or {}).get("data") or {}
        if info.get("backing-filename") or info.get("full-backing-filename"):
            raise ImageImportError("the image has a backing file (a path on the machine "
                                   "that made it): flatten it with `qemu-img convert -O "
                                   "qcow2` first")
        if data.get("data-file"):
            raise ImageImportError("the image keeps its data in an external data file (a "
                                   "path on the machine that made it): convert it with "
                                   "`qemu-img convert -O qcow2` first")
        if info.get("encrypted") or data.get("encrypt"):
            raise ImageImportError("the image is encrypted: QEMU would need its secret")
        return int(info["virtual-size"])

    @classmethod
    def _virtual_size(cls, path: str) -> int | None:
        """The guest-visible size of a built image by `qemu-img info` (None where the
        file is not here or qemu-img cannot tell)."""
        try:
            info = cls._qemu_img_info(path)
            return int(info["virtual-size"]) if info else None
        except (ImageImportError, ValueError, KeyError):
            return None

    def users(self, name: str) -> list[str]:
        """Instances whose disks come from image `name`."""
        return sorted(n for n, meta in self.provider.managed().items()
                      if meta.get("image") == name)

    def _in_use_check(self, name: str) -> None:
        users = self.users(name)
        if users:
            raise CloudError(f"image {name!r} is in use by instance(s) "
                             f"{', '.join(users)}: delete them first")

    def _put_meta(self, name: str, meta: dict) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(meta, f)
            f.flush()
            self.provider.upload_volume(IMAGE_POOL, f"{name}.json", Path(f.name))

    def delete(self, name: str) -> None:
        self.get(name)  # NotFound with a hint if there is no such image
        self._in_use_check(name)
        self.provider.drop_warm_bases(name)
        self.provider.delete_volume(IMAGE_POOL, f"{name}.json")
        for suffix in ("vmlinuz", "initrd", "qcow2", "raw"):
            self.provider.delete_volume(IMAGE_POOL, f"{name}.{suffix}")
