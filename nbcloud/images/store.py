"""The image store: images live as volumes in the `nbcloud-images` pool.

A kernel-boot image NAME is three volumes: NAME.vmlinuz, NAME.initrd and NAME.json (its
boot command line and build digest); a disk image is NAME.qcow2 (or .raw) and NAME.json.
Keeping the description in the pool means a second machine, or a rebuilt inventory,
finds the same images.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound
from ..spec import check_name

IMAGE_POOL = "nbcloud-images"


@dataclass(frozen=True)
class Image:
    name: str
    kind: str                      # 'kernel' (direct kernel boot) or 'disk'
    digest: str
    size: int                      # bytes on disk, all volumes
    kernel: str | None = None      # volume paths on the host
    initrd: str | None = None
    cmdline: str | None = None
    disk: str | None = None
    disk_format: str | None = None

    def __str__(self) -> str:
        return (f"image {self.name}: {self.kind} boot, {self.size / 2**20:.1f} MiB, "
                f"digest {self.digest[:12]}")

    def _repr_html_(self) -> str:
        from html import escape
        return (f"<b>image</b> {escape(self.name)} ({escape(self.kind)} boot, "
                f"{self.size / 2**20:.1f} MiB)")


class ImageStore:
    """Images in one libvirt connection's image pool."""

    def __init__(self, backend):
        self.backend = backend

    def _describe(self, name: str, volumes: dict[str, tuple[str, int]]) -> Image | None:
        meta_vol = volumes.get(f"{name}.json")
        if meta_vol is None:
            return None
        meta = json.loads(Path(meta_vol[0]).read_text())
        size = sum(alloc for vol, (_, alloc) in volumes.items()
                   if vol.startswith(f"{name}."))
        if meta["kind"] == "kernel":
            return Image(name, "kernel", meta["digest"], size,
                         kernel=volumes[f"{name}.vmlinuz"][0],
                         initrd=volumes[f"{name}.initrd"][0], cmdline=meta["cmdline"])
        fmt = meta["format"]
        return Image(name, "disk", meta["digest"], size,
                     disk=volumes[f"{name}.{fmt}"][0], disk_format=fmt)

    def list(self) -> list[Image]:
        volumes = self.backend.volumes(IMAGE_POOL)
        names = sorted(v[:-5] for v in volumes if v.endswith(".json"))
        return [img for n in names if (img := self._describe(n, volumes))]

    def get(self, name: str) -> Image:
        check_name(name, "image name")
        image = self._describe(name, self.backend.volumes(IMAGE_POOL))
        if image is None:
            hint = "`%cloud image build tiny`" if name == "tiny" else "`%cloud image import`"
            raise NotFound(f"image {name!r} does not exist: create it with {hint}")
        return image

    def put_kernel_image(self, name: str, kernel: Path, initrd: Path, cmdline: str,
                         digest: str) -> Image:
        """Store a kernel-boot image unless the same digest is there already."""
        check_name(name, "image name")
        try:
            current = self.get(name)
            if current.digest == digest:
                return current
        except NotFound:
            pass
        self.backend.upload_volume(IMAGE_POOL, f"{name}.vmlinuz", kernel)
        self.backend.upload_volume(IMAGE_POOL, f"{name}.initrd", initrd)
        # The description goes last: an interrupted upload leaves no half image listed.
        self._put_meta(name, {"kind": "kernel", "cmdline": cmdline, "digest": digest})
        return self.get(name)

    def _put_meta(self, name: str, meta: dict) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(meta, f)
            f.flush()
            self.backend.upload_volume(IMAGE_POOL, f"{name}.json", Path(f.name))

    def delete(self, name: str) -> None:
        self.get(name)  # NotFound with a hint if there is no such image
        self.backend.delete_volume(IMAGE_POOL, f"{name}.json")
        for suffix in ("vmlinuz", "initrd", "qcow2", "raw"):
            self.backend.delete_volume(IMAGE_POOL, f"{name}.{suffix}")
