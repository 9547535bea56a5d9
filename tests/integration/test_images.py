"""Images on the real daemon: import (file and loopback URL), overlays, refusals."""
from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
from functools import partial

import pytest

from nbcloud.core.errors import AlreadyExists, CloudError
from nbcloud.providers.libvirt.volumes import IMAGE_POOL, INSTANCE_POOL
from nbcloud.ui import commands

NAMES = ("im-url", "im-file", "im-bad")


def qemu_img_info(path: str) -> dict:
    out = subprocess.run(["qemu-img", "info", "-U", "--output", "json", path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args):
        pass


@pytest.fixture(scope="module")
def served_qcow2(tmp_path_factory):
    """A 64 MiB-virtual qcow2 with a little data, on a loopback http.server."""
    root = tmp_path_factory.mktemp("www")
    raw = root / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(64 << 20)
        f.seek(510)
        f.write(b"\x55\xaa")
        f.seek(1 << 20)
        f.write(b"nbcloud" * 1000)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(root / "disk.qcow2")],
                   check=True)
    (root / "error.html").write_text("<html><body>Not here</body></html>\n" * 10)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def clean_images(cloud):
    def clean():
        for inst in ("im-vm", "im-vm2"):
            if cloud.provider.exists(inst):
                cloud.instances.delete(inst)
        for name in NAMES:
            for suffix in ("json", "qcow2", "raw"):
                cloud.provider.delete_volume(IMAGE_POOL, f"{name}.{suffix}")
    clean()
    yield
    clean()


def image_volumes(cloud, name: str) -> list[str]:
    return sorted(v for v in cloud.provider.volumes(IMAGE_POOL) if v.startswith(f"{name}."))


def test_import_from_a_loopback_url_with_progress_and_checksum(cloud, served_qcow2,
                                                               clean_images, capsys):
    root, base = served_qcow2
    data = (root / "disk.qcow2").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    args = commands.parse(["image", "import", "im-url", f"{base}/disk.qcow2",
                           "--sha256", digest])
    img = commands.run(cloud, args)
    assert (img.kind, img.disk_format, img.digest) == ("disk", "qcow2", digest)
    assert img.virtual_size == 64 << 20
    assert "import im-url:" in capsys.readouterr().err   # the terminal progress line
    assert qemu_img_info(img.disk)["format"] == "qcow2"
    listed = {row["image"]: row for row in commands.run(cloud, commands.parse(
        ["image", "list"]))}
    assert listed["im-url"]["format"] == "qcow2"
    assert listed["im-url"]["virtual size"] == "64.0 MiB"


def test_bad_imports_are_one_line_and_leave_nothing(cloud, served_qcow2, clean_images):
    root, base = served_qcow2
    before = sorted(cloud.provider.volumes(IMAGE_POOL))
    cases = [
        (["image", "import", "im-bad", f"{base}/disk.qcow2", "--sha256", "0" * 64],
         "checksum mismatch"),
        (["image", "import", "im-bad", f"{base}/error.html"], "not a disk image"),
        (["image", "import", "im-bad", f"{base}/nothing.qcow2"], "404"),
        (["image", "import", "im-bad", str(root / "missing.qcow2")], "no such file"),
        (["image", "import", "im-bad", "../disk.qcow2"], "'..'"),
        (["image", "import", "im-url", str(root / "disk.qcow2")], "exists already"),
    ]
    for argv, words in cases:
        with pytest.raises(CloudError) as err:
            commands.run(cloud, commands.parse(argv))
        assert words in str(err.value) and "\n" not in str(err.value), argv
    assert sorted(cloud.provider.volumes(IMAGE_POOL)) == before
    with pytest.raises(AlreadyExists):
        cloud.import_image("im-url", str(root / "disk.qcow2"))


def test_instance_from_a_disk_image_gets_a_small_overlay(cloud, served_qcow2, clean_images):
    root, _ = served_qcow2
    img = cloud.import_image("im-file", str(root / "disk.qcow2"))
    assert img.boot == "disk"
    # No boot loader in this disk: the guest never gets far, which is all we need here.
    cloud.instances.create("im-vm", image="im-file", flavor="d.nano", wait=False)
    vols = cloud.provider.volumes(INSTANCE_POOL)
    root_path, allocation = vols["im-vm.root.qcow2"]
    info = qemu_img_info(root_path)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == img.disk
    assert info.get("backing-filename-format", "qcow2") == "qcow2"
    assert allocation < 1 << 20                  # a small file, not a copy of the image
    local_path, local_alloc = vols["im-vm.local.qcow2"]
    assert qemu_img_info(local_path)["virtual-size"] == 1 << 30   # d.nano's local disk
    xml = cloud.provider.domain_xml_desc("im-vm")
    assert "<boot dev='hd'/>" in xml and root_path in xml and local_path in xml
    assert "<kernel>" not in xml
    assert cloud.instances.get("im-vm").state == "running"

    with pytest.raises(CloudError, match="in use by instance.*im-vm"):
        commands.run(cloud, commands.parse(["image", "delete", "im-file"]))
    assert image_volumes(cloud, "im-file") == ["im-file.json", "im-file.qcow2"]

    cloud.instances.delete("im-vm")
    vols = cloud.provider.volumes(INSTANCE_POOL)
    assert not [v for v in vols if v.startswith("im-vm.")]
    commands.run(cloud, commands.parse(["image", "delete", "im-file"]))
    assert image_volumes(cloud, "im-file") == []
