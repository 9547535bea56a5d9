"""What the host tells a warm clone of the tiny image right after its restore (protocol
NBCLONE1, read by tiny_init.sh's `warm_wait`): a header line, then a cpio archive.

The header is `NBCLONE1 <len> <seed> <epoch>`: the archive's length, 64 bytes of the
host's CSPRNG in hex (the guest writes them into /dev/urandom and reseeds its CRNG at
once, so no clone draws from the base's random state), and the host's UTC seconds (the
guest's clock stood still while it was saved). The archive (newc, `images/cpio.py`; busybox
`cpio -i` stops at its trailer, which matters on a tty that never sends EOF) holds what
the init's `read_seed` would make of the instance's NoCloud seed, made here because every
fork costs under emulation, and a clone's first forks the most:

- `run/nbcloud/clone.env`: `MD_ID MD_HOST CC_HOST NICS MACS` as shell assignments (NICS:
  the lines `configure_network` reads; MACS: "<base MAC> <clone MAC>" pairs, since a
  restored virtio-net device keeps the base's MAC until the guest sets the clone's);
- `run/nbcloud/authorized_keys`, `run/nbcloud/host_ed25519.pub`;
- `etc/dropbear/dropbear_ed25519_host_key`: the host key nbcloud pinned, in dropbear's
  own format (what `dropbearconvert` would write), so the guest converts nothing;
- `run/nbcloud/fingerprints`: the lines the init prints on the console about its host
  key, as cloud-init does (the guest would otherwise hash it with five programs, just
  when the first SSH login wants the one vCPU);
- `run/nbcloud/user-data`: the user's own user-data, read in the guest as from a seed;
- `run/cidata/*`: the seed's files, for the record.

The message holds the instance's private host key: it goes only to the clone's console
socket, never to a log.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import shlex
import struct
import time
from collections.abc import Sequence

from nbcloud.core.cloudinit import StaticNet
from nbcloud.images.cpio import Archive

PROTOCOL = "NBCLONE1"


def dropbear_ed25519(private_pem: str) -> bytes:
    """An OpenSSH ed25519 private key in dropbear's format: the string "ssh-ed25519", then
    a string of the 32-byte private and the 32-byte public halves."""
    from cryptography.hazmat.primitives import serialization as ser
    key = ser.load_ssh_private_key(private_pem.encode(), None)
    priv = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    pub = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    name = b"ssh-ed25519"
    return struct.pack(">I", len(name)) + name + struct.pack(">I", 64) + priv + pub


def nics_lines(nets: Sequence[StaticNet]) -> str:
    """The NICS lines the init's YAML reader makes of `cloudinit.network_config(nets)`:
    id, MAC, set-name, match-name, dhcp|static, addresses, gateway, name servers ("-"
    where there is none); only the first NIC has the default route."""
    lines = []
    for i, net in enumerate(nets):
        gw = net.gateway if net.gateway and i == 0 else "-"
        dns = ",".join(net.nameservers) or "-"
        lines.append(f"eth{i} {net.mac.lower()} eth{i} - static {net.address} {gw} {dns}\n")
    return "".join(lines)


def fingerprint_lines(name: str, host_key_public: str) -> str:
    """What tiny_init.sh's `print_fingerprints` prints for host key `host_key_public` of
    instance `name`: the SHA256 fingerprint and the key, between cloud-init's markers."""
    kind, blob = host_key_public.split()[:2]
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest())
    host = name.split(".")[0]
    return ("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
            f"256 SHA256:{digest.decode().rstrip('=')} root@{host} (ED25519)\n"
            "-----END SSH HOST KEY FINGERPRINTS-----\n"
            "-----BEGIN SSH HOST KEY KEYS-----\n"
            f"{kind} {blob} root@{host}\n"
            "-----END SSH HOST KEY KEYS-----\n")


def identity_message(*, name: str, nets: Sequence[StaticNet],
                     macs: Sequence[tuple[str, str]], authorized_keys: Sequence[str],
                     host_key_private: str, host_key_public: str,
                     user_data: str | None, seed_files: dict[str, str]) -> bytes:
    """The NBCLONE1 message for instance `name`: header line and archive (see the top)."""
    env = {"MD_ID": name, "MD_HOST": name, "CC_HOST": name, "NICS": nics_lines(nets),
           "MACS": " ".join(f"{old.lower()} {new.lower()}" for old, new in macs)}
    arc = Archive()
    arc.add_file("run/nbcloud/clone.env",
                 "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()).encode(), 0o600)
    arc.add_file("run/nbcloud/authorized_keys",
                 "".join(f"{k.strip()}\n" for k in authorized_keys).encode(), 0o600)
    arc.add_file("run/nbcloud/host_ed25519.pub", f"{host_key_public.strip()}\n".encode(),
                 0o600)
    arc.add_file("run/nbcloud/fingerprints",
                 fingerprint_lines(name, host_key_public).encode(), 0o600)
    arc.add_file("etc/dropbear/dropbear_ed25519_host_key",
                 dropbear_ed25519(host_key_private), 0o600)
    if user_data:
        arc.add_file("run/nbcloud/user-data", user_data.lstrip().encode(), 0o600)
    for fname, text in seed_files.items():
        arc.add_file(f"run/cidata/{fname}", text.encode(), 0o600)
    body = arc.to_bytes()
    head = f"{PROTOCOL} {len(body)} {secrets.token_hex(64)} {int(time.time())}\n"
    return head.encode() + body
