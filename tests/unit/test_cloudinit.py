"""NoCloud seeds: the ISO, its three files, and the private key kept out of sight."""

import email
import io
import json
import logging
import shutil
import stat
import subprocess
import warnings
from pathlib import Path

import pycdlib
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

import nbcloud.images
from nbcloud.core.cloudinit import (
    StaticNet,
    build_seed,
    cloud_config,
    new_host_key,
    user_data_document,
)

pytestmark = pytest.mark.unit

NET = StaticNet("52:54:00:AB:cd:01", "10.80.0.5/24", "10.80.0.1", ("10.80.0.1", "10.80.0.2"))
SCRIPT = "#!/bin/sh\necho hello > /root/hello\n"


@pytest.fixture(scope="module")
def host_key():
    return new_host_key("test-host")


@pytest.fixture
def seed_files(tmp_path, host_key):
    """Build a seed with every option; give back its path and its files as text."""
    def build(**kw):
        path = tmp_path / "seed.iso"
        args = dict(instance_id="i-123", hostname="web-1",
                    authorized_keys=["ssh-ed25519 AAAAC3Nz client@lab"],
                    host_key_private=host_key.private, host_key_public=host_key.public)
        build_seed(path, **(args | kw))
        return path, read_iso(path)
    return build


def read_iso(path):
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        files = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_file():
                name = child.rock_ridge.name().decode()
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, rr_path="/" + name)
                files[name] = out.getvalue().decode()
        joliet = sorted(c.file_identifier().decode("utf-16-be") for c in iso.list_children(joliet_path="/")
                        if c.is_file())
        return {"volume_id": iso.pvd.volume_identifier.decode().strip(),
                "files": files, "joliet": joliet}
    finally:
        iso.close()


def cloud_config_parts(user_data: str) -> list[tuple[str, str]]:
    msg = email.message_from_string(user_data)
    return [(p.get_content_type(), p.get_payload(decode=True).decode())
            for p in msg.walk() if not p.is_multipart()]


def test_seed_volume_id_and_files(seed_files):
    path, iso = seed_files(network=NET, user_data=SCRIPT)
    assert iso["volume_id"] == "cidata"
    assert sorted(iso["files"]) == ["meta-data", "network-config", "user-data"]
    assert iso["joliet"] == ["meta-data", "network-config", "user-data"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the host's private key


def test_meta_data(seed_files):
    _, iso = seed_files()
    assert yaml.safe_load(iso["files"]["meta-data"]) == {"instance-id": "i-123",
                                                         "local-hostname": "web-1"}


def test_network_config_is_netplan_v2(seed_files):
    _, iso = seed_files(network=NET)
    net = yaml.safe_load(iso["files"]["network-config"])
    assert net["version"] == 2
    eth = net["ethernets"]["eth0"]
    assert eth["match"] == {"macaddress": "52:54:00:ab:cd:01"}
    assert eth["set-name"] == "eth0"
    assert eth["addresses"] == ["10.80.0.5/24"]
    assert eth["routes"] == [{"to": "0.0.0.0/0", "via": "10.80.0.1"}]
    assert eth["nameservers"] == {"addresses": ["10.80.0.1", "10.80.0.2"]}
    assert eth["dhcp4"] is False


def test_no_network_config_means_dhcp(seed_files):
    _, iso = seed_files()
    assert "network-config" not in iso["files"]


def test_user_data_alone_is_cloud_config(seed_files, host_key):
    _, iso = seed_files()
    text = iso["files"]["user-data"]
    assert text.startswith("#cloud-config\n")
    # the private key as a literal block, the form the tiny image's reader expects
    assert "ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n" in text
    cc = yaml.safe_load(text)
    assert cc["hostname"] == "web-1"
    assert cc["ssh_authorized_keys"] == ["ssh-ed25519 AAAAC3Nz client@lab"]
    assert cc["ssh_keys"]["ed25519_private"] == host_key.private.strip() + "\n"
    assert cc["ssh_keys"]["ed25519_public"] == host_key.public
    assert cc["disable_root"] is False


@pytest.mark.parametrize("theirs, kind", [
    (SCRIPT, "text/x-shellscript"),
    ("#cloud-config\nruncmd:\n  - [touch, /root/ok]\n", "text/cloud-config"),
    ("#cloud-config\nhostname: café\n", "text/cloud-config"),
])
def test_user_data_is_joined_as_mime_multipart(seed_files, theirs, kind):
    _, iso = seed_files(user_data=theirs)
    text = iso["files"]["user-data"]
    assert text.startswith("Content-Type: multipart/mixed; boundary=")
    (ours_type, ours), (their_type, got) = cloud_config_parts(text)
    assert ours_type == "text/cloud-config"
    assert yaml.safe_load(ours)["hostname"] == "web-1"
    assert (their_type, got) == (kind, theirs)


def test_user_data_of_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="must start with"):
        user_data_document("#cloud-config\n{}\n", "echo no shebang")


def test_large_user_data_warns_without_the_key(seed_files, host_key):
    with pytest.warns(UserWarning, match="user-data is") as record:
        seed_files(user_data="#!/bin/sh\n" + "# padding\n" * 2000)
    assert all(host_key.private not in str(w.message) for w in record)


def test_small_user_data_does_not_warn(seed_files):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seed_files(user_data=SCRIPT)


@pytest.mark.parametrize("kw", [
    {"mac": "52:54:00:zz:00:01"}, {"address": "10.80.0.5"}, {"address": "10.80.0.500/24"},
    {"gateway": "gateway"}, {"nameservers": ("8.8.8",)},
])
def test_static_net_is_validated(kw):
    args = {"mac": "52:54:00:00:00:01", "address": "10.0.0.2/24", "gateway": None} | kw
    with pytest.raises(ValueError):
        StaticNet(**args)


def test_new_host_key_is_a_usable_pair(host_key):
    private = serialization.load_ssh_private_key(host_key.private.encode(), password=None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
    assert host_key.public == public.decode() + " test-host"
    assert host_key.private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    private_half, public_half = host_key  # unpacks like the (private, public) tuple it is
    assert (private_half, public_half) == (host_key.private, host_key.public)


def test_private_key_never_shown(seed_files, host_key, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    seed_files(network=NET, user_data=SCRIPT)
    body = host_key.private.splitlines()[1]  # a line of the key's base64
    assert body not in repr(host_key) and body not in str(host_key)
    assert "hidden" in repr(host_key)
    captured = capsys.readouterr()
    assert body not in captured.out + captured.err + caplog.text
    assert body not in cloud_config.__doc__


def test_keys_with_yaml_special_characters_survive():
    ours = cloud_config("h", ["ssh-rsa AAAA 'quoted: yes' #x"], "-----BEGIN X-----\nabc\n",
                        "ssh-ed25519 AAAA h")
    assert yaml.safe_load(ours)["ssh_authorized_keys"] == ["ssh-rsa AAAA 'quoted: yes' #x"]


# --- the tiny image's reader (tiny_init.sh, busybox sh + awk) agrees with the seed -------

BUSYBOX = shutil.which("busybox")
INIT = Path(nbcloud.images.__file__).parent / "tiny_init.sh"
USER_CC = """#cloud-config
hostname: other
ssh_authorized_keys:
  - ssh-ed25519 BBBB user2@lab
runcmd:
  - echo one > out
  - [sh, -c, "echo \\"it's\\" >> out"]
  - - sh
    - -c
    - echo three >> out
"""


def guest_reads(tmp_path, files: dict[str, str]) -> tuple[dict[str, str], Path]:
    """Run the init's read_seed on these seed files; its variables, and its output dir."""
    seed, nb = tmp_path / "cidata", tmp_path / "nb"
    seed.mkdir(parents=True)
    nb.mkdir()
    for name, text in files.items():
        (seed / name).write_text(text)
    script = (f'NBCLOUD_INIT_LIB=1 . "{INIT}"\nNB="{nb}" SEED="{seed}"\nread_seed\n'
              'for v in MD_ID MD_HOST CC_HOST NICS; do eval "echo $v=\\"\\$$v\\""; done\n')
    out = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line), nb


@pytest.mark.usefixtures("busybox")
def test_tiny_image_reads_nbcloud_seed(seed_files, host_key, tmp_path):
    _, iso = seed_files(network=NET, user_data=USER_CC)
    got, nb = guest_reads(tmp_path, iso["files"])
    assert (got["MD_ID"], got["MD_HOST"], got["CC_HOST"]) == ("i-123", "web-1", "other")
    assert got["NICS"].split() == ["eth0", "52:54:00:ab:cd:01", "eth0", "-", "static",
                                   "10.80.0.5/24", "10.80.0.1", "10.80.0.1,10.80.0.2"]
    assert (nb / "authorized_keys").read_text().splitlines() == [
        "ssh-ed25519 AAAAC3Nz client@lab", "ssh-ed25519 BBBB user2@lab"]
    assert (nb / "host_ed25519.pem").read_text() == host_key.private.strip() + "\n"
    assert (nb / "host_ed25519.pub").read_text().strip() == host_key.public
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run([BUSYBOX, "sh", str(nb / "script.runcmd")], cwd=work, check=True)
    assert (work / "out").read_text() == "one\nit's\nthree\n"


@pytest.mark.usefixtures("busybox")
def test_tiny_image_reads_scripts_and_base64_parts(seed_files, tmp_path):
    _, iso = seed_files(user_data="#cloud-config\nhostname: café\n")
    got, _ = guest_reads(tmp_path / "a", iso["files"])
    assert got["CC_HOST"] == "café"  # a utf-8 part travels base64-encoded
    assert got["NICS"] == ""  # no network-config: DHCP
    _, iso = seed_files(user_data=SCRIPT)
    _, nb = guest_reads(tmp_path / "b", iso["files"])
    assert (nb / "script.101").read_text().rstrip("\n") == SCRIPT.rstrip("\n")


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")
def test_tiny_image_reads_openstack_config_drive(seed_files, host_key, tmp_path):
    """Nova's config drive: meta_data.json as Nova writes it, nbcloud's user-data as is."""
    _, iso = seed_files(user_data=USER_CC)
    latest, nb = tmp_path / "drive" / "openstack" / "latest", tmp_path / "nb"
    latest.mkdir(parents=True)
    nb.mkdir()
    meta = {"uuid": "5f0c-11", "meta": {"a": "b"}, "hostname": "web-1.novalocal",
            "name": "web-1", "launch_index": 0, "availability_zone": "nova",
            "public_keys": {"lab": "ssh-ed25519 CCCC nova@lab\n"},
            "keys": [{"name": "lab", "type": "ssh", "data": "ssh-ed25519 CCCC nova@lab\n"}],
            "random_seed": "x\u00e9\\\"y", "project_id": "p", "devices": [], "dedicated_cpus": []}
    (latest / "meta_data.json").write_text(json.dumps(meta))
    (latest / "user_data").write_text(iso["files"]["user-data"])
    script = (f'NBCLOUD_INIT_LIB=1 . "{INIT}"\nNB="{nb}" SEED="{tmp_path / "drive"}"\n'
              'read_config_drive\necho "MD_ID=$MD_ID"; echo "MD_HOST=$MD_HOST"\n')
    out = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                         check=True).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert (got["MD_ID"], got["MD_HOST"]) == ("5f0c-11", "web-1.novalocal")
    # Nova's key (the server's key pair) first, then those of the cloud-config (a number
    # before public_keys, as "launch_index": 0 here, once stopped busybox awk's reading)
    assert (nb / "authorized_keys").read_text().splitlines() == [
        "ssh-ed25519 CCCC nova@lab", "ssh-ed25519 AAAAC3Nz client@lab",
        "ssh-ed25519 BBBB user2@lab"]
    assert (nb / "host_ed25519.pem").read_text() == host_key.private.strip() + "\n"
    assert (nb / "script.runcmd").exists()


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")
def test_tiny_image_reads_openstack_network_data(tmp_path):
    """network_data.json as Nova writes it: each network on its link's MAC; DHCP for
    ipv4_dhcp, a static address with its default route and DNS for ipv4."""
    latest, nb = tmp_path / "drive" / "openstack" / "latest", tmp_path / "nb"
    latest.mkdir(parents=True)
    nb.mkdir()
    data = {"links": [{"id": "tapa", "vif_id": "a", "type": "bridge", "mtu": None,
                       "ethernet_mac_address": "FA:16:3E:0A:A9:E0"},
                      {"id": "tapb", "vif_id": "b", "type": "bridge", "mtu": 1450,
                       "ethernet_mac_address": "fa:16:3e:00:00:02"}],
            "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": "tapa",
                          "network_id": "n0"},
                         {"id": "network1", "type": "ipv4", "link": "tapb",
                          "ip_address": "10.86.0.5", "netmask": "255.255.255.0",
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                      "gateway": "10.86.0.1"}], "network_id": "n1"},
                         {"id": "network2", "type": "ipv6_slaac", "link": "tapb"}],
            "services": [{"type": "dns", "address": "10.86.0.2"}]}
    (latest / "network_data.json").write_text(json.dumps(data))
    script = (f'NBCLOUD_INIT_LIB=1 . "{INIT}"\nNB="{nb}" SEED="{tmp_path / "drive"}"\n'
              'read_config_drive\nprintf "%s" "$NICS"\n')
    out = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines() == [
        "net0 fa:16:3e:0a:a9:e0 - - dhcp - - -",
        "net1 fa:16:3e:00:00:02 - - static 10.86.0.5/24 10.86.0.1 10.86.0.2"]
