"""The screen of a domain: virDomainScreenshot, read from a libvirt stream."""
from __future__ import annotations

import libvirt

from nbcloud.core.errors import CloudError


class ScreenMixin:
    conn: libvirt.virConnect

    def screenshot(self, name: str, screen: int = 0) -> tuple[str, bytes]:
        """(MIME type, image bytes) of what domain `name` shows on `screen`.

        The hypervisor picks the format: QEMU >= 7.1 answers PNG, older ones PPM."""
        dom = self._lookup(name)
        self._metadata(dom)
        if not dom.isActive():
            raise CloudError(f"instance {name!r} is not running: it has no screen to show "
                             f"(start it with `%cloud instance start {name}`)")
        stream = self.conn.newStream(0)
        try:
            mime = dom.screenshot(stream, screen, 0)
            chunks: list[bytes] = []
            stream.recvAll(lambda _stream, data, out: out.append(data), chunks)
            stream.finish()
        except libvirt.libvirtError as exc:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
            message = exc.get_error_message() or ""
            if "no screens" in message:
                raise CloudError(f"instance {name!r} has no screen: instances boot "
                                 "without a VGA adapter, which costs boot time under "
                                 "software emulation; create it with --screen "
                                 "(screen=True) to take screenshots, or read its serial "
                                 f"console with `%cloud instance console {name}`") from None
            raise CloudError(f"libvirt could not take a screenshot of {name!r}: "
                             f"{message}") from None
        return mime or "application/octet-stream", b"".join(chunks)
