"""The screen of a domain (virDomainScreenshot) and its interactive serial console
(virDomainOpenConsole), both through libvirt streams."""
from __future__ import annotations

import threading

import libvirt

from nbcloud.core.errors import CloudError


class SerialConsole:
    """The serial console of a running domain as a blocking libvirt stream, on a libvirt
    connection of its own: a blocking `recv` holds its connection until the guest writes,
    so on the cloud's connection every other call (a listing, a repr) would wait for the
    guest. One session at a time (libvirt refuses a second without force, which nbcloud
    never uses); closing aborts the stream, which wakes a reader blocked in `recv`, and
    closes its connection."""

    def __init__(self, uri: str, uuid: bytes, name: str):
        self.name = name
        self._lock = threading.Lock()
        self.closed = False
        self._conn = libvirt.open(uri)
        self._stream = self._conn.newStream(0)
        try:
            self._conn.lookupByUUID(uuid).openConsole(None, self._stream, 0)
        except libvirt.libvirtError as exc:
            self.close()
            message = exc.get_error_message() or ""
            if "Active console session" in message:
                raise CloudError(f"the serial console of {name!r} is in use by another "
                                 "session (a terminal, or `virsh console`): close that one "
                                 "first") from None
            raise CloudError(f"libvirt could not open the serial console of {name!r}: "
                             f"{message}") from None

    def recv(self) -> bytes:
        """What the guest wrote next (blocks); b"" once the console is closed."""
        try:
            data = self._stream.recv(64 * 1024)
        except libvirt.libvirtError:
            return b""
        return data if isinstance(data, bytes) else b""   # -1/-2: error, would block

    def send(self, data: bytes) -> None:
        while data:
            if self.closed:
                raise CloudError(f"the serial console of {self.name!r} is closed")
            try:
                sent = self._stream.send(data)
            except libvirt.libvirtError as exc:
                raise CloudError(f"the serial console of {self.name!r} closed: "
                                 f"{exc.get_error_message()}") from None
            data = data[sent:] if sent > 0 else data

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._stream.abort()
            except libvirt.libvirtError:
                pass
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass


class ScreenMixin:
    conn: libvirt.virConnect

    def open_serial(self, name: str) -> SerialConsole:
        """The interactive serial console of running instance `name`."""
        dom = self._lookup(name)
        self._metadata(dom)
        if not dom.isActive():
            raise CloudError(f"instance {name!r} is not running: its serial console has "
                             f"nobody to talk to (start it with `%cloud instance start "
                             f"{name}`)")
        return SerialConsole(self.conn.getURI(), dom.UUID(), name)

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
