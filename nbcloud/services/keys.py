"""SSH key pairs: the user's login keys and per-instance host keys (ed25519).

Login keys live under nbcloud's home, `keys/NAME` (private, 0600) and `keys/NAME.pub`.
`create` makes a pair here; `import_` takes only a public key line (ssh-ed25519, ssh-rsa,
ecdsa-sha2-nistp256/384/521), whose private half stays with its owner. Such an instance
accepts logins with that key from the user's own SSH client, but nbcloud itself cannot
log in with it: `Instance.ssh` says so (creating the instance and waiting for its SSH
server works as usual).

Private keys are written 0600 and never returned in a repr, a log line or a cell: a
`KeyPair` holds only the path of its private key.
"""
from __future__ import annotations

import base64
import binascii
import html
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nbcloud.context import Context
from nbcloud.core import config
from nbcloud.core.errors import AlreadyExists, CloudError, NotFound, SSHError
from nbcloud.core.spec import InvalidSpec, check_name, check_path

KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521")
MIN_RSA_BITS = 2048
_PUBLIC_HELP = ("give one public key line like 'ssh-ed25519 AAAA... comment' (types: "
                "ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521)")


@dataclass(frozen=True)
class KeyPair:
    """A login key: its public line and where its private half is (if nbcloud has it)."""
    name: str
    public: str                                  # "ssh-ed25519 AAAA... comment"
    private_path: Path = field(repr=False)

    @property
    def type(self) -> str:
        return self.public.split()[0]

    @property
    def fingerprint(self) -> str:
        from nbcloud.services.ssh import fingerprint
        return fingerprint(self.public)

    @property
    def has_private(self) -> bool:
        """False for an imported key: nbcloud cannot log in with it."""
        return self.private_path.exists()

    def _rows(self) -> dict[str, str]:
        return {"type": self.type, "fingerprint": self.fingerprint, "public key": self.public,
                "private key": str(self.private_path) if self.has_private
                else "(imported: not here, nbcloud cannot log in with this key)"}

    def __str__(self) -> str:
        return f"key {self.name}\n" + "\n".join(f"  {k}: {v}" for k, v in self._rows().items())

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
                        for k, v in self._rows().items())
        return f"<b>key</b> {html.escape(self.name)}<table>{cells}</table>"


def generate(comment: str) -> tuple[str, str]:
    """A new ed25519 pair: (OpenSSH private key text, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


def parse_public_key(text: str) -> str:
    """The one public key line in `text`, checked; InvalidSpec otherwise.

    Error messages never quote `text`: a user may paste a private key by mistake."""
    if not isinstance(text, str):
        raise InvalidSpec(f"the key is not text: {_PUBLIC_HELP}")
    if "PRIVATE KEY" in text:
        raise InvalidSpec("that is a private key: import its public half (the .pub file); "
                          "nbcloud never takes a private key")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidSpec(f"the key text has {len(lines)} lines: {_PUBLIC_HELP}")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise InvalidSpec(f"the key text is not an SSH public key: {_PUBLIC_HELP}")
    kind, blob = parts[0], parts[1]
    comment = parts[2] if len(parts) == 3 else ""
    if not comment.isprintable():
        raise InvalidSpec("the key's comment has control characters: remove them")
    try:
        decoded = base64.b64decode(blob, validate=True)
        key = serialization.load_ssh_public_key(f"{kind} {blob}".encode())
    except (binascii.Error, ValueError, TypeError):
        raise InvalidSpec(f"the {kind} key data is damaged (not valid base64 of a "
                          f"{kind} key): {_PUBLIC_HELP}") from None
    if not decoded.startswith(len(kind).to_bytes(4, "big") + kind.encode()):
        raise InvalidSpec(f"the key data is not of type {kind}: {_PUBLIC_HELP}")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidSpec(f"the ssh-rsa key has {key.key_size} bits: use at least "
                          f"{MIN_RSA_BITS} (or ssh-ed25519)")
    return " ".join(p for p in (kind, blob, comment) if p)


def _folder() -> Path:
    folder = config.home() / "keys"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _paths(name: str) -> tuple[Path, Path]:
    folder = _folder()
    return folder / name, folder / f"{name}.pub"


def _write_new(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def create_key(name: str) -> KeyPair:
    """A new ed25519 pair `name`; AlreadyExists if there is one."""
    check_name(name, "key name")
    private_path, public_path = _paths(name)
    if private_path.exists() or public_path.exists():
        raise AlreadyExists(f"key {name!r} exists already: pick another name or delete "
                            "it first")
    private, public = generate(f"nbcloud-{name}")
    try:
        _write_new(private_path, private, 0o600)
        _write_new(public_path, public + "\n", 0o644)
    except FileExistsError:
        raise AlreadyExists(f"key {name!r} was created meanwhile: pick another name") \
            from None
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    del private
    return KeyPair(name, public, private_path)


def import_key(name: str, text: str) -> KeyPair:
    """Store public key `text` as key `name` (no private half: see the module's doc)."""
    check_name(name, "key name")
    public = parse_public_key(text)
    private_path, public_path = _paths(name)
    if private_path.exists() or public_path.exists():
        raise AlreadyExists(f"key {name!r} exists already: pick another name or delete "
                            "it first")
    try:
        _write_new(public_path, public + "\n", 0o644)
    except FileExistsError:
        raise AlreadyExists(f"key {name!r} was created meanwhile: pick another name") \
            from None
    return KeyPair(name, public, private_path)


def get_key(name: str) -> KeyPair:
    check_name(name, "key name")
    private_path, public_path = _paths(name)
    if not public_path.exists():
        raise NotFound(f"key {name!r} does not exist: make one with `%cloud key create "
                       f"{name}` or `%cloud key import {name} FILE`")
    return KeyPair(name, public_path.read_text().strip(), private_path)


def list_keys() -> list[KeyPair]:
    out = []
    for path in sorted(_folder().glob("*.pub")):
        try:
            out.append(get_key(path.name[:-4]))
        except (InvalidSpec, NotFound):
            continue  # not a file of ours
    return out


def delete_key(name: str) -> None:
    private_path, public_path = _paths(get_key(name).name)
    private_path.unlink(missing_ok=True)
    public_path.unlink(missing_ok=True)


_default_lock = threading.Lock()


def user_key(name: str = "default") -> KeyPair:
    """The user's login key `name`; `default` is created on first use."""
    check_name(name, "key name")
    if name == "default":
        private_path, public_path = _paths(name)
        with _default_lock:  # parallel creates (--count) ask for it at the same moment
            if not public_path.exists():
                try:
                    return create_key(name)
                except AlreadyExists:  # another process is writing it: wait for its half
                    deadline = time.monotonic() + 2.0
                    while not public_path.exists() and time.monotonic() < deadline:
                        time.sleep(0.01)
    return get_key(name)


def login_key(name: str = "default") -> Path:
    """The private key file nbcloud logs in with; SSHError for an imported key."""
    key = user_key(name)
    if not key.has_private:
        raise SSHError(f"key {name!r} was imported without its private key: nbcloud cannot "
                       "log in with it; use your own SSH client, or create the instance "
                       "with a key made by `%cloud key create`")
    return key.private_path


class Keys:
    """`cloud.keys`: create, import, list and delete login keys; every change is logged
    (name and fingerprint, never key material) in the operations log."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _run(self, verb: str, name: str, fn, *args):
        with self.ctx.inventory.operation(verb, "key", name) as op:
            result = fn(*args)
            op.detail = result.fingerprint if isinstance(result, KeyPair) else ""
        return result

    def _published(self, make, name: str, *args) -> KeyPair:
        """Make key `name` here, then give the cloud its public half (a Nova key pair on
        OpenStack; nothing on libvirt); undone here if the cloud refuses."""
        key = make(name, *args)
        try:
            self.ctx.provider.put_keypair(name, key.public)
        except CloudError:
            delete_key(name)
            raise
        return key

    def create(self, name: str) -> KeyPair:
        check_name(name, "key name")
        if _paths(name)[1].exists() or _paths(name)[0].exists():
            raise AlreadyExists(f"key {name!r} exists already: pick another name or "
                                "delete it first")
        return self._run("create", name, self._published, create_key, name)

    def import_(self, name: str, public_key: str) -> KeyPair:
        """Import a public key line, or the file that holds one."""
        check_name(name, "key name")
        text = public_key
        if "\n" not in public_key and not public_key.startswith(KEY_TYPES):
            path = Path(public_key).expanduser()
            check_path(path, "public key file")
            if not path.is_file():
                raise InvalidSpec(f"{public_key!r} is neither a file nor a public key: "
                                  f"{_PUBLIC_HELP}")
            if path.stat().st_size > 64 * 1024:
                raise InvalidSpec(f"{public_key} is too large for a public key file")
            text = path.read_text(errors="replace")
        parse_public_key(text)  # refused before the operations log sees anything
        if _paths(name)[1].exists() or _paths(name)[0].exists():
            raise AlreadyExists(f"key {name!r} exists already: pick another name or "
                                "delete it first")
        return self._run("import", name, self._published, import_key, name, text)

    def get(self, name: str) -> KeyPair:
        return get_key(name)

    __getitem__ = get

    def list(self) -> list[KeyPair]:
        return list_keys()

    def delete(self, name: str) -> None:
        """Delete key `name`; refused while an instance on this host logs in with it."""
        get_key(name)
        users = sorted(n for n, meta in self.ctx.provider.managed().items()
                       if meta.get("kind") == "instance"
                       and meta.get("key", "default") == name)
        if users:
            raise CloudError(f"key {name!r} is the login key of instance"
                             f"{'s' if len(users) > 1 else ''} {', '.join(users)}: "
                             "delete them first (without it nobody could log in)")
        self._run("delete", name, self._unpublished, name)

    def _unpublished(self, name: str) -> None:
        self.ctx.provider.delete_keypair(name)
        delete_key(name)
