"""Multi-NIC seeds: every NIC in network-config (netplan v2, by MAC), one default route,
and the tiny image's /init reads them all."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import nbcloud.images
from nbcloud.core.cloudinit import StaticNet, build_seed, network_config, new_host_key

pytestmark = pytest.mark.unit

A = StaticNet("52:54:00:00:00:0A", "10.77.0.5/24", "10.77.0.1", ("10.77.0.1",))
B = StaticNet("52:54:00:00:00:0b", "10.78.0.7/24", "10.78.0.1", ("10.78.0.1",))
BUSYBOX = shutil.which("busybox")
INIT = Path(nbcloud.images.__file__).parent / "tiny_init.sh"


def test_every_nic_is_configured_and_only_the_first_routes():
    doc = yaml.safe_load(network_config([A, B]))
    eth0, eth1 = doc["ethernets"]["eth0"], doc["ethernets"]["eth1"]
    assert doc["version"] == 2 and list(doc["ethernets"]) == ["eth0", "eth1"]
    assert (eth0["match"]["macaddress"], eth0["set-name"]) == ("52:54:00:00:00:0a", "eth0")
    assert (eth1["match"]["macaddress"], eth1["set-name"]) == ("52:54:00:00:00:0b", "eth1")
    assert eth0["addresses"] == ["10.77.0.5/24"] and eth1["addresses"] == ["10.78.0.7/24"]
    assert eth0["routes"] == [{"to": "0.0.0.0/0", "via": "10.77.0.1"}]
    assert "routes" not in eth1
    assert eth1["nameservers"] == {"addresses": ["10.78.0.1"]}


def test_single_value_form_still_works():
    assert network_config(A) == network_config([A])


def test_duplicate_macs_are_refused():
    with pytest.raises(ValueError, match="same MAC"):
        network_config([A, StaticNet(A.mac, "10.78.0.9/24", None)])


@pytest.mark.usefixtures("busybox")
def test_tiny_init_reads_every_nic(tmp_path):
    seed, nb = tmp_path / "cidata", tmp_path / "nb"
    key = new_host_key("h")
    build_seed(tmp_path / "seed.iso", instance_id="i", hostname="two",
               authorized_keys=["ssh-ed25519 AAAA x"], host_key_private=key.private,
               host_key_public=key.public, network=[A, B])
    seed.mkdir()
    nb.mkdir()
    (seed / "network-config").write_text(network_config([A, B]))
    script = (f'NBCLOUD_INIT_LIB=1 . "{INIT}"\nNB="{nb}" SEED="{seed}"\nread_seed\n'
              'printf %s "$NICS"\n')
    out = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert [line.split() for line in out.strip().splitlines()] == [
        ["eth0", "52:54:00:00:00:0a", "eth0", "-", "static", "10.77.0.5/24", "10.77.0.1",
         "10.77.0.1"],
        ["eth1", "52:54:00:00:00:0b", "eth1", "-", "static", "10.78.0.7/24", "-",
         "10.78.0.1"]]
