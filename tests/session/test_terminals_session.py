"""Terminals as an unprivileged user on the session daemon (Binder's situation): the serial
console through the user's own libvirt daemon, and the shell over SSH through the
loopback port forwarded to the guest."""
from __future__ import annotations

import threading
import time


def _wait_line(screen: bytearray, lock: threading.Lock, line: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with lock:
            text = screen.decode(errors="replace")
        if line in [x.strip() for x in text.replace("\r", "").split("\n")]:
            return
        time.sleep(0.2)
    raise AssertionError(f"no line {line!r} within {timeout} s in {text[-300:]!r}")


def test_serial_console_and_ssh_terminal_as_the_user(session_cloud):
    inst = session_cloud.instances.create("ss-term", image="tiny", flavor="t.nano")
    try:
        for serial in (True, False):
            screen, lock = bytearray(), threading.Lock()

            def take(data: bytes, screen=screen, lock=lock) -> None:
                with lock:
                    screen.extend(data)

            term = inst.terminal(serial=serial).start(take)
            term.write("\rhostname\r")
            _wait_line(screen, lock, "ss-term")
            term.close()
            assert not term.running
        # the user's daemon released the console: it opens again
        session_cloud.provider.open_serial("ss-term").close()
    finally:
        session_cloud.instances.delete("ss-term")
