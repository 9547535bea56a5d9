"""Adoption and NIC drift on the real daemon.

A domain defined and started with plain `virsh` (no nbcloud mark) is listed by drift and
refused by a cell that names it; `adopt` marks it, and from then on plan, drift, apply and
destroy manage it. Its NICs are then changed behind nbcloud's back with virsh
attach-interface / detach-interface (a NIC added, one moved to another network, one
removed): drift and plan report each, and apply puts back what nbcloud recorded, as the
running domain's live XML shows."""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tests.waiting import wait_for

from nbcloud.core.spec import InvalidSpec

NAME, STACK, NET2 = "st-plain", "st-adopt", "st-net2"
MAC1, MAC2 = "52:54:00:5a:00:01", "52:54:00:5a:00:02"
LOG = Path(f"/var/log/libvirt/qemu/{NAME}.console.log")
BODY = f"instance:\n  {NAME}: {{image: tiny, flavor: c.nano, network: [nbcloud]}}\n"


def virsh(*args: str) -> str:
    done = subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise AssertionError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def live_nics() -> list[tuple[str, str]]:
    root = ET.fromstring(virsh("dumpxml", NAME))
    return [(i.find("source").get("network"), i.find("mac").get("address"))
            for i in root.findall("devices/interface")]


def drift_of(cloud) -> list[str]:
    return [row[3] for row in cloud.stacks.drift().rows if row[1] == NAME]


def _cleanup(cloud) -> None:
    if cloud.provider.exists(NAME):
        for verb in ("destroy", "undefine"):   # best effort: it may be stopped already
            subprocess.run(["virsh", "-c", "qemu:///system", verb, NAME],
                           capture_output=True, check=False)
    cloud.inventory.remove(cloud.uri, "instance", NAME)
    if NET2 in cloud.provider.network_names():
        cloud.networks.delete(NET2)


@pytest.fixture
def plain_domain(cloud, tmp_path):
    """A running tiny guest made with `virsh define` + `virsh start`: no nbcloud mark."""
    _cleanup(cloud)
    tiny = cloud.images.get("tiny")
    # not quiet: the kernel's lines on each hot-plugged NIC are what the guest shows
    cmdline = " ".join(w for w in tiny.cmdline.split() if w != "quiet")
    xml = f"""<domain type='qemu'>
  <name>{NAME}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{tiny.kernel}</kernel>
    <initrd>{tiny.initrd}</initrd><cmdline>{cmdline}</cmdline></os>
  <features><acpi/></features>
  <devices>
    <interface type='network'><mac address='{MAC1}'/><source network='nbcloud'/>
      <model type='virtio'/></interface>
    <serial type='pty'><log file='{LOG}' append='off'/></serial><console type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>"""
    (tmp_path / "plain.xml").write_text(xml)
    virsh("define", str(tmp_path / "plain.xml"))
    virsh("start", NAME)
    # NICs are hot-plugged through ACPI: wait until the guest's init runs (ACPI is up)
    wait_for(lambda: b"nbcloud:" in LOG.read_bytes() if LOG.exists() else False,
             timeout=90, what=f"{NAME} to boot")
    yield NAME
    _cleanup(cloud)
    LOG.unlink(missing_ok=True)


def test_plain_domain_is_refused_then_adopted_and_its_nic_drift_reverted(cloud,
                                                                         plain_domain):
    assert drift_of(cloud) == ["unmanaged (no nbcloud mark): never touched"]
    with pytest.raises(InvalidSpec, match="without nbcloud's mark"):
        cloud.stacks.apply(STACK, BODY)
    assert "nbcloud.org/xmlns" not in virsh("dumpxml", NAME)   # refused: no mark written

    assert cloud.adopt(NAME, "instance", STACK) == \
        f"adopted instance {NAME} into stack {STACK} as c.nano on nbcloud"
    dumped = virsh("dumpxml", NAME)
    assert "http://nbcloud.org/xmlns/instance/1" in dumped and "<nbcloud:adopted>1<" in dumped
    assert drift_of(cloud) == []
    assert cloud.stacks.apply(STACK, BODY).actions == []    # managed, as it is

    booted = LOG.read_text(errors="replace").count("enabling device")
    # a NIC added behind nbcloud's back
    virsh("attach-interface", NAME, "network", "nbcloud", "--mac", MAC2, "--model",
          "virtio", "--live", "--config")
    assert drift_of(cloud) == [f"NICs changed behind nbcloud's back: NIC {MAC2} on "
                               "nbcloud added"]
    plan = cloud.stacks.plan(STACK, BODY)
    assert [(a.op, a.name) for a in plan.actions] == [("update", NAME)]
    cloud.stacks.apply(STACK, BODY)
    assert live_nics() == [("nbcloud", MAC1)]

    # the NIC moved to another network
    cloud.networks.create(NET2, "10.93.0.0/24", "isolated")
    virsh("detach-interface", NAME, "network", "--mac", MAC1, "--live", "--config")
    virsh("attach-interface", NAME, "network", NET2, "--mac", MAC1, "--model", "virtio",
          "--live", "--config")
    assert drift_of(cloud) == [f"NICs changed behind nbcloud's back: NIC {MAC1} moved "
                               f"from nbcloud to {NET2}"]
    cloud.stacks.apply(STACK, BODY)
    assert live_nics() == [("nbcloud", MAC1)]

    # the NIC removed
    virsh("detach-interface", NAME, "network", "--mac", MAC1, "--live", "--config")
    assert drift_of(cloud) == [f"NICs changed behind nbcloud's back: NIC {MAC1} on "
                               "nbcloud removed"]
    cloud.stacks.apply(STACK, BODY)
    assert live_nics() == [("nbcloud", MAC1)]
    assert cloud.stacks.plan(STACK, BODY).actions == []
    # the guest saw each NIC plugged: 2 by virsh, 2 by apply
    plugged = LOG.read_text(errors="replace").count("enabling device") - booted
    assert plugged >= 4, plugged

    plan = cloud.stacks.destroy(STACK)
    assert [(a.op, a.name) for a in plan.actions] == [("delete", NAME)]
    assert NAME not in virsh("list", "--all", "--name").split()
