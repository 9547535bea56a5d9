"""On the real daemon, a TCG instance's QEMU runs with the bounded translation cache:
libvirt keeps <tb-cache> in the live XML and hands QEMU `tb-size` (MiB) on its command
line. (What it saves and costs is bench/memory.py's business, not a test's.)"""
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nbcloud.backend.libvirt import xml as lx

NAME = "bn-tbl"


@pytest.fixture(scope="module")
def tiny(cloud):
    if cloud.accelerator()["accelerator"] != "tcg":
        pytest.skip("instances here run under KVM: no TCG translation cache to bound")
    if cloud.backend.exists(NAME):
        cloud.instances.delete(NAME)
    inst = cloud.instances.create(NAME, image="tiny", flavor="t.nano")
    yield inst
    if cloud.backend.exists(NAME):
        cloud.instances.delete(NAME)


def test_live_xml_and_qemu_command_line_carry_the_cache_size(cloud, tiny):
    live = ET.fromstring(cloud.backend.domain_xml_desc(NAME))
    tb = live.find("features/tcg/tb-cache")
    assert tb is not None, "the running domain lost its <tcg> element"
    size_kib = int(tb.text) * {"KiB": 1, "MiB": 1024}[tb.get("unit", "KiB")]
    assert size_kib == lx.TCG_TB_CACHE_MIB * 1024

    pid = int(Path(f"/run/libvirt/qemu/{NAME}.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    accel = [a.decode() for a in argv if a.startswith(b"tcg") or b"tb-size" in a]
    assert any(f"tb-size={lx.TCG_TB_CACHE_MIB}" in a for a in accel), accel
    assert tiny.ssh("echo up").strip() == "up"   # and the guest runs with it
