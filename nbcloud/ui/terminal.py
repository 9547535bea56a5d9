"""Interactive terminals in front ends: `%cloud instance terminal NAME [--serial]` (an
xterm.js widget in the cell, through anywidget) and `nbcloud terminal NAME [--serial]`
(the shell's own terminal, which is what a JupyterLab terminal tab runs).

The session itself is services/terminals.py. The widget's JavaScript (static/terminal.js)
is built from extensions/jupyterlab/widget/terminal.js with xterm.js bundled in: nothing
is fetched from the network at run time.
"""
from __future__ import annotations

import contextvars
import os
import select
import signal
import sys
import threading
from pathlib import Path

import anywidget
import traitlets

STATIC = Path(__file__).parent / "static"
#: what is kept of the guest's output until the first view is there to show it
SCROLLBACK = 64 * 1024
#: Ctrl-], as virsh console and telnet: leaves `nbcloud terminal`
ESCAPE = b"\x1d"


class TerminalWidget(anywidget.AnyWidget):
    """A terminal on an instance in the notebook. Typing reaches the guest; its output is
    drawn by xterm.js. Close (the button, `close()`, the last view going away, the
    kernel's exit) ends the session."""

    _esm = STATIC / "terminal.js"
    _css = STATIC / "terminal.css"
    name = traitlets.Unicode().tag(sync=True)
    serial = traitlets.Bool(False).tag(sync=True)
    title = traitlets.Unicode().tag(sync=True)
    status = traitlets.Unicode("connecting").tag(sync=True)

    def __init__(self, terminal, **kwargs):
        kind = "serial console" if terminal.kind == "serial" else "shell over SSH"
        super().__init__(name=terminal.name, serial=terminal.kind == "serial",
                         title=f"{terminal.name}: {kind}", **kwargs)
        self.terminal = terminal
        self._views = 0
        self._pending: bytearray | None = bytearray()   # until the first view is ready
        self._lock = threading.Lock()
        self.on_msg(self._on_message)
        # the reader thread runs in this cell's context (its messages' parent)
        ctx = contextvars.copy_context()
        terminal.start(lambda data: ctx.run(self._output, data),
                       lambda why: ctx.run(self._ended, why))
        self.status = "open" + (" (press Enter for a prompt)" if self.serial else "")

    def _output(self, data: bytes) -> None:
        with self._lock:
            if self._pending is not None:
                self._pending += data
                del self._pending[:-SCROLLBACK]
                return
        self.send({"type": "output"}, [data])

    def _ended(self, why: str) -> None:
        self.status = f"closed: {why}"

    def _on_message(self, _widget, content, _buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "input" and isinstance(content.get("data"), str):
                if not self.terminal.closed:
                    self.terminal.write(content["data"])
            elif kind in ("resize", "ready"):
                self.terminal.resize(_int(content.get("cols")), _int(content.get("rows")))
                if kind == "ready":
                    self._views += 1
                    with self._lock:
                        pending, self._pending = self._pending, None
                        if pending:
                            self.send({"type": "output"}, [bytes(pending)])
            elif kind == "detach":
                self._views -= 1
                if self._views <= 0:
                    self.terminal.close("its last view was closed")
            elif kind == "close":
                self.close()
        except Exception as exc:   # a message must never kill the kernel's comm handler
            self.terminal.close(f"error: {exc}")

    def close(self) -> None:
        """End the session and the widget."""
        self.terminal.close("closed")
        super().close()


def _int(value) -> int:
    return value if isinstance(value, int) else 0


def widget(instance, serial: bool = False) -> TerminalWidget:
    """The terminal widget of `%cloud instance terminal`."""
    return TerminalWidget(instance.terminal(serial=serial))


# ----- `nbcloud terminal NAME [--serial]`: the terminal of the shell it runs in ---------------
def run_in_tty(instance, serial: bool = False) -> int:
    """Connect this process's terminal to the instance's shell or serial console until the
    session ends or Ctrl-] is typed. Returns an exit status."""
    import termios
    import tty

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    interactive = os.isatty(stdin)
    cols, rows = _size(stdout)
    term = instance.terminal(serial=serial, cols=cols, rows=rows)
    wake_r, wake_w = os.pipe()
    term.start(lambda data: os.write(stdout, data), lambda _why: os.write(wake_w, b"x"))
    kind = "serial console" if serial else "shell"
    os.write(stdout, f"[nbcloud: {instance.name}'s {kind}; Ctrl-] leaves"
                     f"{', Enter shows a prompt' if serial else ''}]\r\n".encode())
    saved = termios.tcgetattr(stdin) if interactive else None
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: term.resize(*_size(stdout)))
    try:
        if interactive:
            tty.setraw(stdin)
        while not term.closed:
            ready, _, _ = select.select([stdin, wake_r], [], [])
            if wake_r in ready:
                break
            data = os.read(stdin, 4096)
            typed, escaped, _ = data.partition(ESCAPE)
            if typed:
                term.write(typed)
            if escaped or not data:
                break
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        term.close("left")
        os.close(wake_r)
        os.close(wake_w)
    print(f"\r\n[nbcloud: {instance.name}'s {kind} closed: {term.reason}]")
    return 0


def _size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return size.columns, size.lines
    except OSError:
        return 80, 24
