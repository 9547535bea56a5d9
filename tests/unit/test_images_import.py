"""The importer's read/verify/detect step, and the store's clean-up, without a daemon.

The test driver cannot read volume files, so the store runs here on a small fake backend
that keeps volumes in a dict; the URL source is an http.server on loopback.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import struct
import subprocess
import tempfile
import threading
from functools import partial
from pathlib import Path

import pytest

from nbcloud.core.errors import AlreadyExists, CloudError
from nbcloud.images.importer import (
    ImageImportError,
    check_sha256,
    detect_format,
    stream_into,
)
from nbcloud.providers.libvirt.images import IMAGE_POOL, ImageStore
from nbcloud.ui.progress import TextProgress, describe


def qcow2_bytes(virtual_size: int = 1 << 30, backing: bool = False, total: int = 300_000
                ) -> bytes:
    """A real qcow2 image (made by qemu-img) padded with zeros to `total` bytes; with
    `backing`, its header names a backing file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path),
                        str(virtual_size)], check=True)
        data = bytearray(path.read_bytes())
    if backing:
        struct.pack_into(">Q", data, 8, 512)
    return bytes(data) + bytes(max(0, total - len(data)))


def mbr_disk(total: int = 200_000) -> bytes:
    data = bytearray(total)
    data[510:512] = b"\x55\xaa"
    data[4096:4100] = b"data"
    return bytes(data)


HTML = b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n" * 20


# ----- format detection --------------------------------------------------------------
def test_qcow2_is_detected_with_its_virtual_size():
    probe = detect_format(qcow2_bytes(5 << 30)[:65536])
    assert (probe.format, probe.virtual_size) == ("qcow2", 5 << 30)


@pytest.mark.parametrize("head", [
    mbr_disk()[:65536],
    bytes(65536),                                             # blank disk
    bytes(1080) + b"\x53\xef" + bytes(65536 - 1082),          # bare ext4 filesystem
])
def test_raw_disks_are_detected(head):
    assert detect_format(head).format == "raw"


@pytest.mark.parametrize("head, words", [
    (HTML, "HTML error page"),
    (b"\x1f\x8b\x08" + bytes(1000), "gzip"),
    (b"\xfd7zXZ\x00" + bytes(1000), "xz"),
    (b"KDMV" + bytes(1000), "VMDK"),
    (qcow2_bytes(backing=True)[:4096], "backing file"),
    (b"\x7fELF" + bytes(4092), "not a disk image"),
])
def test_anything_else_is_refused_in_one_line(head, words):
    with pytest.raises(ImageImportError) as err:
        detect_format(head)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_sha256_must_be_64_hex_digits():
    assert check_sha256("AB" * 32) == "ab" * 32
    assert check_sha256("sha256:" + "0" * 64) == "0" * 64
    with pytest.raises(ImageImportError, match="64 hex digits"):
        check_sha256("abc")


# ----- streaming from files and URLs ---------------------------------------------------
class Sink:
    """An upload target that keeps what it is given, chunk by chunk."""

    def __init__(self):
        self.calls = []
        self.largest = 0

    def __call__(self, fmt, size, read):
        buf = io.BytesIO()
        while chunk := read(256 * 1024):
            self.largest = max(self.largest, len(chunk))
            buf.write(chunk)
        self.calls.append((fmt, size, buf.getvalue()))


def test_a_local_file_is_streamed_hashed_and_reported(tmp_path):
    data = qcow2_bytes(total=3_000_000)
    (tmp_path / "img.qcow2").write_bytes(data)
    sink, seen = Sink(), []
    got = stream_into(sink, str(tmp_path / "img.qcow2"),
                      sha256=hashlib.sha256(data).hexdigest(),
                      progress=lambda done, total: seen.append((done, total)))
    assert sink.calls == [("qcow2", len(data), data)]
    assert sink.largest <= 256 * 1024            # chunks, never the whole file
    assert got.sha256 == hashlib.sha256(data).hexdigest() and got.size == len(data)
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_checksum_mismatch_raises_after_the_bytes_passed(tmp_path):
    (tmp_path / "disk.raw").write_bytes(mbr_disk())
    with pytest.raises(ImageImportError, match="checksum mismatch") as err:
        stream_into(Sink(), str(tmp_path / "disk.raw"), sha256="0" * 64)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("source, words", [
    ("/nonexistent/disk.qcow2", "no such file"),
    ("ftp://127.0.0.1/disk.qcow2", "http(s)"),
    ("../disk.qcow2", "'..'"),
])
def test_bad_sources_are_one_line_errors(source, words):
    sink = Sink()
    with pytest.raises(ImageImportError) as err:
        stream_into(sink, source)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert sink.calls == []


class _NoLengthHandler(http.server.BaseHTTPRequestHandler):
    """Answers without Content-Length (like a chunked or streamed response)."""
    body = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args):
        pass


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """A loopback http.server serving tmp_path/www; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(_QuietFiles, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_import_streams_with_length_and_checksum(http_root):
    root, base = http_root
    data = qcow2_bytes(total=1_500_000)
    (root / "cloud.qcow2").write_bytes(data)
    sink = Sink()
    got = stream_into(sink, f"{base}/cloud.qcow2", sha256=hashlib.sha256(data).hexdigest())
    assert sink.calls == [("qcow2", len(data), data)] and got.format == "qcow2"


def test_url_errors_are_one_line(http_root):
    root, base = http_root
    (root / "index.html").write_bytes(HTML)
    with pytest.raises(ImageImportError, match="404"):
        stream_into(Sink(), f"{base}/missing.qcow2")
    with pytest.raises(ImageImportError, match="HTML error page"):
        stream_into(Sink(), f"{base}/index.html")
    with pytest.raises(ImageImportError, match="cannot download"):
        stream_into(Sink(), "http://127.0.0.1:9/disk.qcow2")   # nothing listens on 9


def test_url_without_length_is_spooled_to_the_cache(tmp_path):
    data = mbr_disk(700_000)
    handler = type("H", (_NoLengthHandler,), {"body": data})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    spool = tmp_path / "spool"
    spool.mkdir()
    sink = Sink()
    try:
        stream_into(sink, f"http://127.0.0.1:{server.server_address[1]}/x",
                    spool_dir=spool)
    finally:
        server.server_close()
    assert sink.calls == [("raw", len(data), data)]
    assert list(spool.iterdir()) == []          # the spool file is gone


# ----- the store: nothing left behind ---------------------------------------------------
class FakeBackend:
    """Volumes of the image pool as files in a folder; enough for ImageStore."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.domains: dict[str, dict[str, str]] = {}

    def volumes(self, pool):
        assert pool == IMAGE_POOL
        return {p.name: (str(p), p.stat().st_size) for p in self.folder.iterdir()}

    def upload_volume_stream(self, pool, name, size, read):
        path = self.folder / name
        try:
            with open(path, "wb") as f:
                while chunk := read(65536):
                    f.write(chunk)
        except BaseException:
            path.unlink()
            raise
        return str(path)

    def upload_volume(self, pool, name, source, fmt="raw"):
        (self.folder / name).write_bytes(Path(source).read_bytes())
        return str(self.folder / name)

    def delete_volume(self, pool, name):
        (self.folder / name).unlink(missing_ok=True)

    def managed(self):
        return self.domains

    def drop_warm_bases(self, image):   # the libvirt provider's: bases made of the image
        self.dropped = [*getattr(self, "dropped", []), image]
        return []


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    return ImageStore(FakeBackend(folder))


def test_store_import_describes_the_image(store, tmp_path):
    data = qcow2_bytes(3 << 30)
    (tmp_path / "a.qcow2").write_bytes(data)
    img = store.import_disk("im-a", str(tmp_path / "a.qcow2"))
    assert (img.kind, img.disk_format, img.boot) == ("disk", "qcow2", "disk")
    assert img.digest == hashlib.sha256(data).hexdigest()
    assert img.virtual_size == 3 << 30 and img.kernel is None
    assert sorted(store.provider.volumes(IMAGE_POOL)) == ["im-a.json", "im-a.qcow2"]


def test_store_leaves_nothing_behind_on_mismatch_and_refuses_duplicates(store, tmp_path):
    (tmp_path / "a.raw").write_bytes(mbr_disk())
    with pytest.raises(ImageImportError, match="checksum mismatch"):
        store.import_disk("im-b", str(tmp_path / "a.raw"), sha256="1" * 64)
    assert store.provider.volumes(IMAGE_POOL) == {}
    store.import_disk("im-b", str(tmp_path / "a.raw"))
    before = store.provider.volumes(IMAGE_POOL)
    with pytest.raises(AlreadyExists, match="exists already"):
        store.import_disk("im-b", str(tmp_path / "a.raw"))
    assert store.provider.volumes(IMAGE_POOL) == before


def test_store_leaves_nothing_behind_when_interrupted(store, tmp_path):
    (tmp_path / "a.raw").write_bytes(mbr_disk(2_000_000))

    def interrupt(done, total):
        if done > 500_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.import_disk("im-c", str(tmp_path / "a.raw"), progress=interrupt)
    assert store.provider.volumes(IMAGE_POOL) == {}


def test_store_refuses_bad_names_and_deleting_an_image_in_use(store, tmp_path):
    from nbcloud.core.spec import InvalidSpec
    with pytest.raises(InvalidSpec):
        store.import_disk("../etc", str(tmp_path / "x"))
    (tmp_path / "a.raw").write_bytes(mbr_disk())
    store.import_disk("im-d", str(tmp_path / "a.raw"))
    store.provider.domains["im-vm"] = {"kind": "instance", "image": "im-d"}
    with pytest.raises(CloudError, match="in use by instance.*im-vm"):
        store.delete("im-d")
    del store.provider.domains["im-vm"]
    store.delete("im-d")
    assert store.provider.volumes(IMAGE_POOL) == {}
    assert store.provider.dropped == ["im-d"]   # its warm bases went with it


# ----- progress -------------------------------------------------------------------------
def test_text_progress_ends_with_one_line():
    out = io.StringIO()
    p = TextProgress("import x", stream=out)
    for done in range(0, 10 << 20, 1 << 20):
        p(done, 10 << 20)
    p(10 << 20, 10 << 20)
    assert out.getvalue().count("\n") == 1 and "10.0 MiB of 10.0 MiB (100%)" in out.getvalue()
    assert describe(1 << 20, None, 2.0) == "1.0 MiB, 2.0 s"
