"""SSH key pairs: the user's login key and per-instance host keys (ed25519).

Private keys are written 0600 and never returned in a repr, a log line or a cell.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import config
from .spec import check_name


@dataclass(frozen=True)
class KeyPair:
    name: str
    public: str                                  # "ssh-ed25519 AAAA... comment"
    private_path: Path = field(repr=False)


def generate(comment: str) -> tuple[str, str]:
    """A new ed25519 pair: (OpenSSH private key text, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


def user_key(name: str = "default") -> KeyPair:
    """The user's login key `name`, created on first use under nbcloud's home."""
    check_name(name, "key name")
    folder = config.home() / "keys"
    folder.mkdir(mode=0o700, exist_ok=True)
    private_path, public_path = folder / name, folder / f"{name}.pub"
    if not private_path.exists():
        private, public = generate(f"nbcloud-{name}")
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private)
        public_path.write_text(public + "\n")
    return KeyPair(name, public_path.read_text().strip(), private_path)
