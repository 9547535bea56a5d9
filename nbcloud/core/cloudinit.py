"""NoCloud seed ISOs (volume id ``cidata``) for cloud-init and for the tiny image's /init.

The seed holds ``meta-data``, ``user-data`` and, for static addresses, ``network-config``
(netplan v2, one ethernet per NIC matched by MAC; only the first has the default route).  nbcloud's own settings (hostname, authorized keys, the pinned host key)
travel in a ``#cloud-config`` document; a user's user-data is joined to it as a MIME
multipart, the way cloud-init expects several parts.
"""

from __future__ import annotations

import io
import ipaddress
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import NamedTuple

import pycdlib
import yaml

USER_DATA_LIMIT = 16 * 1024  # what EC2 and most clouds accept
# Lists from several cloud-config parts add up, a later scalar wins (cloud-init's
# default would let the user's ssh_authorized_keys replace nbcloud's own key).
MERGE_TYPE = "list(append)+dict(recurse_array)+str()"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class StaticNet:
    """A fixed IPv4 address for the NIC with this MAC (the host also reserves it in DHCP)."""

    mac: str
    address: str  # "10.80.0.5/24"
    gateway: str | None
    nameservers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _MAC.match(self.mac.lower()):
            raise ValueError(f"not a MAC address: {self.mac!r}")
        if "/" not in self.address:
            raise ValueError(f"the address needs a prefix length: {self.address!r}")
        ipaddress.IPv4Interface(self.address)
        for ip in (self.gateway, *self.nameservers):
            if ip is not None:
                ipaddress.IPv4Address(ip)


class HostKey(NamedTuple):
    """An SSH host key pair; the private half never shows in a repr."""

    private: str  # OpenSSH PEM
    public: str  # "ssh-ed25519 AAAA... comment"

    def __repr__(self) -> str:
        return f"HostKey(public={self.public!r}, private=<hidden>)"


def new_host_key(comment: str = "nbcloud") -> HostKey:
    """A fresh ed25519 key pair as (OpenSSH private PEM, "ssh-ed25519 AAAA... comment")."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH)
    return HostKey(private.decode(), f"{public.decode()} {comment}")


def build_seed(path: Path, *, instance_id: str, hostname: str,
               authorized_keys: Sequence[str], host_key_private: str, host_key_public: str,
               network: StaticNet | Sequence[StaticNet] | None = None,
               user_data: str | None = None) -> dict[str, str]:
    """Write the NoCloud seed ISO to ``path`` (mode 0600: it holds the host's private key);
    returns its files (`seed_files`).

    ``network`` is the static address of one NIC, or a list of them, first NIC first."""
    files = seed_files(instance_id=instance_id, hostname=hostname,
                       authorized_keys=authorized_keys, host_key_private=host_key_private,
                       host_key_public=host_key_public, network=network,
                       user_data=user_data)
    size = len(files["user-data"].encode())
    if size > USER_DATA_LIMIT:
        warnings.warn(f"user-data is {size} bytes, above the {USER_DATA_LIMIT} that "
                      "clouds usually accept", stacklevel=2)
    _write_iso(Path(path), files)
    return files


def seed_files(*, instance_id: str, hostname: str, authorized_keys: Sequence[str],
               host_key_private: str, host_key_public: str,
               network: StaticNet | Sequence[StaticNet] | None = None,
               user_data: str | None = None) -> dict[str, str]:
    """The seed's files by name: meta-data, user-data and (with `network`)
    network-config."""
    files = {
        "meta-data": _dump({"instance-id": instance_id, "local-hostname": hostname}),
        "user-data": user_data_document(
            cloud_config(hostname, authorized_keys, host_key_private, host_key_public), user_data),
    }
    if network is not None and (isinstance(network, StaticNet) or len(network)):
        files["network-config"] = network_config(network)
    return files


def cloud_config(hostname: str, authorized_keys: Sequence[str],
                 host_key_private: str, host_key_public: str) -> str:
    """nbcloud's own #cloud-config document."""
    doc = {
        "hostname": hostname,
        "disable_root": False,  # nbcloud logs in as root on real cloud images too
        "ssh_pwauth": False,
        "ssh_authorized_keys": [k.strip() for k in authorized_keys],
        "ssh_keys": {"ed25519_private": host_key_private.strip() + "\n",
                     "ed25519_public": host_key_public.strip()},
    }
    return "#cloud-config\n" + _dump(doc)


def user_data_document(ours: str, theirs: str | None) -> str:
    """``ours`` alone, or both as a MIME multipart of cloud-config / shell-script parts."""
    if theirs is None:
        return ours
    # the spec takes leading blank lines (a triple-quoted string in a notebook starts with
    # one); cloud-init and the tiny image look for '#!' or '#cloud-config' at byte 0
    theirs = theirs.lstrip()
    if theirs.startswith("#cloud-config"):
        subtype = "cloud-config"
    elif theirs.startswith("#!"):
        subtype = "x-shellscript"
    else:
        raise ValueError("user-data must start with '#!' (a script) or '#cloud-config'")
    msg = MIMEMultipart()
    for name, text, sub in (("nbcloud.cfg", ours, "cloud-config"), ("user-data", theirs, subtype)):
        part = MIMEText(text, sub, "us-ascii" if text.isascii() else "utf-8")
        part.add_header("Content-Disposition", "attachment", filename=name)
        if sub == "cloud-config":
            part["Merge-Type"] = MERGE_TYPE
        msg.attach(part)
    return msg.as_string()


def network_config(nets: StaticNet | Sequence[StaticNet]) -> str:
    """netplan v2, as cloud-init (and netplan itself) read it: NIC i is ``eth{i}``.

    Only the first NIC gets a default route (one way out); every NIC keeps its network's
    name servers, the first NIC's first."""
    nets = [nets] if isinstance(nets, StaticNet) else list(nets)
    macs = [net.mac.lower() for net in nets]
    if len(set(macs)) != len(macs):
        raise ValueError("two NICs have the same MAC address")
    ethernets = {}
    for i, net in enumerate(nets):
        eth: dict = {"match": {"macaddress": net.mac.lower()}, "set-name": f"eth{i}",
                     "dhcp4": False, "addresses": [net.address]}
        if net.gateway and i == 0:
            eth["routes"] = [{"to": "0.0.0.0/0", "via": net.gateway}]
        if net.nameservers:
            eth["nameservers"] = {"addresses": list(net.nameservers)}
        ethernets[f"eth{i}"] = eth
    return _dump({"version": 2, "ethernets": ethernets})


class _Dumper(yaml.SafeDumper):
    """safe_dump, with multi-line strings as literal blocks (``|``) and no line folding."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=1 << 16, allow_unicode=True)


def _write_iso(path: Path, files: dict[str, str]) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, text in files.items():
        data = text.encode()
        iso_name = "/" + re.sub(r"[^A-Z0-9]", "_", name.upper())[:8] + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)
        os.replace(tmp, path)
    finally:
        iso.close()
        if tmp.exists():
            tmp.unlink()
