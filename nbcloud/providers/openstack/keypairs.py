"""Key pairs on OpenStack: Nova's, holding only the public half of the user's login key.

nbcloud makes (or imports) a login key on the user's side and gives Nova its public line
under the same name, so that `openstack server create --key-name` and the console know it
and a server's metadata lists it; Nova never makes a key pair for nbcloud, so no private
key ever passes through the cloud.
"""
from __future__ import annotations

from nbcloud.core.errors import CloudError


class KeyPairMixin:
    """The key-pair operations of `OpenStackProvider` (providers/base.py, KeyPairs)."""

    def put_keypair(self, name: str, public_key: str) -> None:
        """Nova's key pair `name` with `public_key` (made, or replaced if it differs).
        Two creates at once (`--count`) may both make it: the second finds it there."""
        from openstack.exceptions import ConflictException
        if self._nova_key(name) == _key_line(public_key):
            return
        self.conn.compute.delete_keypair(name, ignore_missing=True)
        try:
            self.conn.compute.create_keypair(name=name, public_key=public_key.strip(),
                                             type="ssh")
        except ConflictException:
            if self._nova_key(name) != _key_line(public_key):
                raise CloudError(f"Nova's key pair {name!r} changed under nbcloud: another "
                                 "client replaced it; try again") from None
        except Exception as exc:  # noqa: BLE001  (the API's reason, in one line)
            raise CloudError(f"Nova refused key pair {name!r}: "
                             f"{' '.join(str(exc).split())[:300]}") from None

    def _nova_key(self, name: str) -> str | None:
        have = self.conn.compute.find_keypair(name)
        return None if have is None else _key_line(have.public_key or "")

    def delete_keypair(self, name: str) -> None:
        self.conn.compute.delete_keypair(name, ignore_missing=True)


def _key_line(public_key: str) -> str:
    """A public key without its comment: type and base64."""
    return " ".join(public_key.split()[:2])
