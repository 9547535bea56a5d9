"""Interactive terminals on instances: the guest's shell over SSH (a pty, the pinned host
key) or its serial console (the provider's stream, which needs no network in the guest).

A `Terminal` moves bytes both ways: one reader thread per session hands what the guest
writes to a callback, `write` sends keystrokes. Closing it (or the guest ending the shell,
or the process exiting) ends the thread, the channel or stream and the SSH connection:
nothing is left running. The front ends (the notebook widget, `nbcloud terminal`) are in ui/.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from typing import Callable

import paramiko

from nbcloud.core.errors import CloudError, SSHError

#: the terminal type the guest's programs are told (xterm.js and JupyterLab's terminal
#: speak it)
TERM = "xterm-256color"
#: the open terminals of this process, closed at its exit
_OPEN: weakref.WeakSet[Terminal] = weakref.WeakSet()


class _Shell:
    """The guest's login shell in a pty, on an SSH connection of its own."""

    def __init__(self, client: paramiko.SSHClient, cols: int, rows: int):
        self.client = client
        try:
            self.channel = client.get_transport().open_session()
            self.channel.get_pty(term=TERM, width=cols, height=rows)
            self.channel.invoke_shell()
        except (paramiko.SSHException, OSError, AttributeError) as exc:
            client.close()
            raise SSHError(f"could not open a shell over SSH: {exc}") from None

    def recv(self) -> bytes:
        try:
            return self.channel.recv(64 * 1024)
        except (paramiko.SSHException, OSError, EOFError):
            return b""

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (paramiko.SSHException, OSError) as exc:
            raise SSHError(f"the shell's connection closed: {exc}") from None

    def resize(self, cols: int, rows: int) -> None:
        try:
            self.channel.resize_pty(width=cols, height=rows)
        except (paramiko.SSHException, OSError):
            pass

    def close(self) -> None:
        transport = self.client.get_transport()
        self.channel.close()
        self.client.close()
        if transport is not None and transport is not threading.current_thread():
            transport.join(timeout=5)   # paramiko's thread for the connection


class _Serial:
    """The serial console (a provider stream); a serial line has no window size."""

    def __init__(self, stream):
        self.stream = stream

    def recv(self) -> bytes:
        return self.stream.recv()

    def send(self, data: bytes) -> None:
        self.stream.send(data)

    def resize(self, cols: int, rows: int) -> None:
        pass

    def close(self) -> None:
        self.stream.close()


class Terminal:
    """One interactive session with instance `name`: kind "ssh" or "serial"."""

    def __init__(self, name: str, kind: str, backend):
        self.name, self.kind = name, kind
        self._backend = backend
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.closed = False
        self.reason = ""
        self._on_closed: Callable[[str], None] | None = None
        _OPEN.add(self)

    def __repr__(self) -> str:
        state = f"closed ({self.reason})" if self.closed else "open"
        return f"<Terminal {self.kind} {self.name} {state}>"

    def start(self, on_output: Callable[[bytes], None],
              on_closed: Callable[[str], None] | None = None) -> Terminal:
        """Hand everything the guest writes to `on_output` (from a thread of its own);
        `on_closed(reason)` once the session ends, whoever ended it."""
        self._on_closed = on_closed
        self._thread = threading.Thread(target=self._pump, args=(on_output,), daemon=True,
                                        name=f"nbcloud-terminal-{self.kind}-{self.name}")
        self._thread.start()
        return self

    def _pump(self, on_output: Callable[[bytes], None]) -> None:
        try:
            while True:
                data = self._backend.recv()
                if not data:
                    break
                on_output(data)
        finally:
            self.close("the guest ended the session" if not self.closed else self.reason)

    def write(self, data: bytes | str) -> None:
        """Send keystrokes (text is sent as UTF-8); nothing once closed."""
        if self.closed:
            raise CloudError(f"the {self.kind} terminal of {self.name} is closed")
        self._backend.send(data.encode() if isinstance(data, str) else data)

    def resize(self, cols: int, rows: int) -> None:
        if not self.closed and 1 <= cols <= 1000 and 1 <= rows <= 1000:
            self._backend.resize(int(cols), int(rows))

    def close(self, reason: str = "closed") -> None:
        """End the session (idempotent); waits for the reader thread to end."""
        with self._lock:
            if self.closed:
                return
            self.closed, self.reason = True, reason
        _OPEN.discard(self)
        self._backend.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self._on_closed is not None:
            self._on_closed(reason)

    @property
    def running(self) -> bool:
        """Whether its reader thread is alive."""
        return self._thread is not None and self._thread.is_alive()


def open_terminal(instance, *, serial: bool = False, cols: int = 80,
                  rows: int = 24) -> Terminal:
    """A terminal on `instance` (an Instance handle): its shell over SSH, or with
    `serial` its serial console. Not started: call `start` with the output's receiver."""
    if serial:
        instance.provider.require("serial")
        return Terminal(instance.name, "serial", _Serial(instance.provider.open_serial(
            instance.name)))
    if instance.state != "running":
        raise CloudError(f"instance {instance.name!r} is {instance.state}: start it first "
                         f"(`%cloud instance start {instance.name}`)")
    return Terminal(instance.name, "ssh", _Shell(instance.connect(), cols, rows))


def close_all() -> None:
    """Close every terminal this process has open (at exit, or when nbcloud unloads)."""
    for term in list(_OPEN):
        term.close("nbcloud closed its terminals")


atexit.register(close_all)
