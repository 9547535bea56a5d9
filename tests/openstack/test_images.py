"""Images on a real OpenStack: imported into Glance from a file and from a URL served on
loopback inside the cloud's namespace, with the progress the bar shows, checksum checked;
Glance (an admin's view) is the witness."""
from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import threading

import pytest

from nbcloud.core.errors import CloudError

FILE_IMAGE, URL_IMAGE = "ok-img-file", "ok-img-url"


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    return path


@pytest.fixture
def served(tmp_path):
    """A raw disk image on http://127.0.0.1:PORT/small.raw (this namespace's loopback)."""
    raw = tmp_path / "small.raw"
    raw.write_bytes(b"\0" * (2 << 20))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield raw, f"http://127.0.0.1:{httpd.server_port}/small.raw"
    httpd.shutdown()
    httpd.server_close()


def _gone(os_cloud, *names):
    for name in names:
        if os_cloud.images.exists(name):
            os_cloud.images.delete(name)


def glance(admin_conn, name: str) -> list:
    return [i for i in admin_conn.image.images(name=name)]


def test_import_from_a_file_with_progress(os_cloud, admin_conn, disk):
    _gone(os_cloud, FILE_IMAGE)
    seen = []
    image = os_cloud.import_image(FILE_IMAGE, str(disk),
                                  progress=lambda done, total: seen.append((done, total)))
    try:
        (witness,) = glance(admin_conn, FILE_IMAGE)
        assert (witness.status, witness.disk_format) == ("active", "qcow2")
        assert witness.owner == os_cloud.provider.project_id
        assert witness.size == disk.stat().st_size and image.kind == "disk"
        assert seen and seen[-1][0] == disk.stat().st_size
    finally:
        _gone(os_cloud, FILE_IMAGE)
    assert glance(admin_conn, FILE_IMAGE) == []


def test_import_from_a_url_checked_by_its_sha256(os_cloud, admin_conn, served):
    raw, url = served
    _gone(os_cloud, URL_IMAGE)
    with pytest.raises(CloudError, match="(?i)sha-?256"):
        os_cloud.import_image(URL_IMAGE, url, sha256="0" * 64)
    assert glance(admin_conn, URL_IMAGE) == []          # nothing half-made
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    os_cloud.import_image(URL_IMAGE, url, sha256=digest)
    try:
        (witness,) = glance(admin_conn, URL_IMAGE)
        assert (witness.status, witness.disk_format, witness.size) == \
            ("active", "raw", 2 << 20)
        with pytest.raises(CloudError, match="exists already"):
            os_cloud.import_image(URL_IMAGE, url)
    finally:
        _gone(os_cloud, URL_IMAGE)
