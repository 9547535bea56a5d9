"""What an image import refuses: qcow2 images that would make QEMU open a host file (an
external data file, a backing file), features and header extensions nbcloud does not
know, an announced length beyond the cap; and what its errors never quote.

The qcow2 files are real ones, made by `qemu-img create`, then edited where a test needs
a header QEMU would not write.
"""
from __future__ import annotations

import http.server
import json
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from nbcloud.images import importer
from nbcloud.images.importer import ImageImportError, detect_format, stream_into
from nbcloud.providers.libvirt.images import ImageStore

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")


def qemu_img(path: Path, size: str = "1G", *options: str) -> Path:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if options:
        args += ["-o", ",".join(options)]
    subprocess.run([*args, str(path), size], check=True)
    return path


def patched(path: Path, offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))
    return bytes(data)


def head(path: Path) -> bytes:
    return path.read_bytes()[:65536]


def test_the_virtual_size_is_read_from_its_own_field(tmp_path):
    for size, want in (("1G", 1 << 30), ("5G", 5 << 30), ("300M", 300 << 20)):
        probe = detect_format(head(qemu_img(tmp_path / f"{size}.qcow2", size)))
        assert (probe.format, probe.virtual_size) == ("qcow2", want)


def test_an_external_data_file_is_refused(tmp_path):
    target = tmp_path / "host-file"
    target.write_bytes(b"\0" * 65536)
    img = qemu_img(tmp_path / "df.qcow2", "1G", f"data_file={target}")
    with pytest.raises(ImageImportError, match="external data file") as err:
        detect_format(head(img))
    assert str(target) not in str(err.value) and "\n" not in str(err.value)


def test_unknown_incompatible_features_are_refused(tmp_path):
    img = qemu_img(tmp_path / "f.qcow2")
    data = patched(img, 72, ">Q", 1 << 20)        # incompatible_features: bit 20
    with pytest.raises(ImageImportError, match="incompatible feature"):
        detect_format(data[:65536])


def test_a_corrupt_or_encrypted_image_is_refused(tmp_path):
    img = qemu_img(tmp_path / "c.qcow2")
    with pytest.raises(ImageImportError, match="corrupt"):
        detect_format(patched(img, 72, ">Q", 1 << 1)[:65536])
    img = qemu_img(tmp_path / "e.qcow2")
    with pytest.raises(ImageImportError, match="encrypted"):
        detect_format(patched(img, 32, ">I", 1)[:65536])   # crypt_method AES


def test_unknown_header_extensions_are_refused(tmp_path):
    img = qemu_img(tmp_path / "x.qcow2")
    header_length = struct.unpack(">I", img.read_bytes()[100:104])[0]
    data = patched(img, header_length, ">I", 0x12345678)   # the first extension's type
    with pytest.raises(ImageImportError, match="header extension 0x12345678"):
        detect_format(data[:65536])


def test_extensions_that_do_not_end_in_the_header_are_refused(tmp_path):
    img = qemu_img(tmp_path / "t.qcow2")
    header_length = struct.unpack(">I", img.read_bytes()[100:104])[0]
    data = patched(img, header_length + 4, ">I", 0x7fffffff)   # an extension's length
    with pytest.raises(ImageImportError, match="header extension"):
        detect_format(data[:65536])


def test_a_plain_image_made_by_qemu_img_is_accepted(tmp_path):
    assert detect_format(head(qemu_img(tmp_path / "ok.qcow2"))).format == "qcow2"
    v2 = qemu_img(tmp_path / "v2.qcow2", "1G", "compat=0.10")
    assert detect_format(head(v2)).virtual_size == 1 << 30


def test_qemu_img_info_is_the_second_check(tmp_path):
    """An image whose header slipped past (here: a data file named only in the header
    extension, the feature bit cleared) is still refused by what `qemu-img info` says."""
    target = tmp_path / "host-file"
    target.write_bytes(b"\0" * 65536)
    img = qemu_img(tmp_path / "df.qcow2", "1G", f"data_file={target}")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", str(img)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format-specific"]["data"]["data-file"] == str(target)
    with pytest.raises(ImageImportError, match="external data file"):
        ImageStore.check_stored(str(img))
    backed = tmp_path / "backed.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(tmp_path / "df.qcow2"), str(backed)], check=True)
    with pytest.raises(ImageImportError, match="backing file"):
        ImageStore.check_stored(str(backed))
    ImageStore.check_stored(str(qemu_img(tmp_path / "fine.qcow2")))   # no error


def test_an_error_never_quotes_a_local_file(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$j9T$abcdefghijklmnop:19000:0:99999:7:::\n")
    with pytest.raises(ImageImportError) as err:
        stream_into(lambda *a: None, str(secret))
    assert "root" not in str(err.value) and "$y$" not in str(err.value)
    assert "not a disk image" in str(err.value)


class _Huge(http.server.BaseHTTPRequestHandler):
    """Announces a petabyte and sends a qcow2 header, then stops."""
    body = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 50))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args):
        pass


def test_an_announced_length_over_the_cap_is_refused_before_upload(tmp_path):
    img = qemu_img(tmp_path / "h.qcow2")
    handler = type("H", (_Huge,), {"body": img.read_bytes()})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    calls = []
    try:
        with pytest.raises(ImageImportError, match="at most") as err:
            stream_into(lambda fmt, size, read: calls.append(size),
                        f"http://127.0.0.1:{server.server_address[1]}/h.qcow2")
    finally:
        server.server_close()
    assert calls == [] and str(1 << 50) in str(err.value)
    assert importer.IMPORT_MAX < 1 << 50


def test_the_cap_can_be_lower_than_the_default(tmp_path):
    img = qemu_img(tmp_path / "s.qcow2")
    with pytest.raises(ImageImportError, match="at most 1024 bytes"):
        stream_into(lambda *a: None, str(img), limit=1024)
