"""An instance's serial console: the log as it is, or followed live while the guest boots.

`show(inst)` is what `%cloud instance console NAME` returns. While the instance is running
but SSH does not answer yet, a thread tails the console log into an `Output` widget (in a
notebook) until SSH answers, the domain stops, a timeout passes, or the extension is
unloaded; on a terminal the same loop runs in the foreground. Otherwise the log is shown
as it is.
"""
from __future__ import annotations

import contextvars
import html
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core.display import Message

if TYPE_CHECKING:
    from nbcloud.services.instances import Instance

_followers: set[ConsoleFollower] = set()
_followers_lock = threading.Lock()


def ssh_answers(host: str, port: int = 22, timeout: float = 0.5) -> bool:
    """One quick look: does an SSH server greet us on host:port?"""
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


class ConsoleFollower:
    """Tails console log `path` into `sink(text)` until `ready()` is true, `running()` is
    false, `timeout` seconds pass or `stop()` is called; `run()` returns which.

    Once ready it reads on until the log has been quiet for `settle` seconds (at most
    `settle_max`): a guest prints its SSH host key fingerprints beside the ready line, in
    the background, as cloud-init does, and those belong to the boot shown."""

    def __init__(self, path: str | Path, sink: Callable[[str], None], *,
                 ready: Callable[[], bool], running: Callable[[], bool],
                 timeout: float = 120.0, interval: float = 0.2, check_every: float = 1.0,
                 settle: float = 0.6, settle_max: float = 5.0):
        self.path = Path(path)
        self.sink = sink
        self.ready, self.running = ready, running
        self.timeout, self.interval, self.check_every = timeout, interval, check_every
        self.settle, self.settle_max = settle, settle_max
        self.reason = ""
        self.text = ""              # everything sent to the sink so far
        self._stop = threading.Event()
        self._offset = 0
        self._thread: threading.Thread | None = None

    def _read_new(self) -> bool:
        """Pass on what the log gained since the last read; False if nothing."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return False
        if size < self._offset:  # the log starts afresh at each boot (append='off')
            self._offset = 0
        if size == self._offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        self._offset += len(data)
        text = data.decode(errors="replace").replace("\r\n", "\n")
        self.text += text
        self.sink(text)
        return True

    def _read_until_quiet(self) -> None:
        """After ready: read until nothing new came for `settle` s, `settle_max` at most,
        or stop() is called."""
        end = time.monotonic() + self.settle_max
        quiet_since = time.monotonic()
        while time.monotonic() < end and not self._stop.is_set():
            if self._read_new():
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.settle:
                return
            self._stop.wait(min(self.interval, self.settle / 3))

    def run(self) -> str:
        """Follow in this thread; returns why it stopped: 'ssh-ready', 'not running',
        'timeout' or 'stopped'."""
        start = last_check = time.monotonic()
        while True:
            self._read_new()
            now = time.monotonic()
            if self._stop.is_set():
                self.reason = "stopped"
            elif now - last_check >= self.check_every:
                last_check = now
                if self.ready():
                    self.reason = "ssh-ready"
                elif not self.running():
                    self.reason = "not running"
            if not self.reason and now - start >= self.timeout:
                self.reason = "timeout"
            if self.reason == "ssh-ready":
                self._read_until_quiet()
            if self.reason:
                self._read_new()   # the lines written while we looked
                return self.reason
            self._stop.wait(self.interval)

    def start(self, on_end: Callable[[str], None] | None = None) -> ConsoleFollower:
        """Follow in a thread. The thread runs in a copy of this cell's context: with
        ipykernel >= 7 the parent header is a context variable, so what the thread
        appends to a widget lands under the cell that asked for it."""
        def body() -> None:
            try:
                reason = self.run()
                if on_end is not None:
                    on_end(reason)
            finally:
                with _followers_lock:
                    _followers.discard(self)
        with _followers_lock:
            _followers.add(self)
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(body,), daemon=True,
                                        name=f"nbcloud-console-{self.path.stem}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def stop_all(timeout: float = 2.0) -> int:
    """Stop every console follower (on `%unload_ext nbcloud`); returns how many ran."""
    with _followers_lock:
        running = list(_followers)
    for follower in running:
        follower.stop()
    for follower in running:
        follower.join(timeout)
    return len(running)


def followers() -> list[ConsoleFollower]:
    with _followers_lock:
        return list(_followers)


class ConsoleLog(Message):
    """The console log of an instance as it is (not followed)."""

    def __init__(self, name: str, text: str):
        super().__init__(text or "(no console output yet)")
        self.name = name

    def _repr_html_(self) -> str:
        return (f"<b>console of {html.escape(self.name)}</b>"
                f"<pre style='max-height:30em;overflow:auto'>{html.escape(self.text)}</pre>")


class LiveConsole:
    """A console followed live in an `Output` widget, with a status line above it."""

    def __init__(self, name: str, follower: ConsoleFollower):
        import ipywidgets as w
        self.name = name
        self.follower = follower
        self.status = w.HTML(f"following the console of <b>{html.escape(name)}</b> "
                             "while it boots…")
        self.output = w.Output(layout=w.Layout(max_height="30em", overflow="auto"))
        self.box = w.VBox()
        self.box.children = (self.status, self.output)
        follower.sink = self.output.append_stdout
        follower.start(on_end=self._ended)

    def _ended(self, reason: str) -> None:
        why = {"ssh-ready": "it is SSH-ready", "not running": "it is not running any more",
               "timeout": f"still booting after {self.follower.timeout:.0f} s",
               "stopped": "stopped"}.get(reason, reason)
        self.status.value = (f"console of <b>{html.escape(self.name)}</b> "
                             f"(no longer followed: {html.escape(why)})")

    @property
    def text(self) -> str:
        return self.follower.text

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        state = "following" if self.follower.alive else f"ended ({self.follower.reason})"
        return f"<console of {self.name}: {state}, {len(self.text)} characters>"


def log_path(inst: Instance) -> str | None:
    """The console log file of `inst`, if it is on this machine."""
    return inst.console_file()


def follower_for(inst: Instance, sink: Callable[[str], None],
                 timeout: float) -> ConsoleFollower | None:
    """A follower of `inst`'s console if it is booting (running, SSH not answering yet),
    else None. The test driver's domains never boot: never followed (and never probed)."""
    if not inst.service.boots:
        return None
    path = log_path(inst)
    if path is None or inst.state != "running":
        return None
    meta = inst.meta
    host, port = meta.get("ip", ""), int(meta.get("ssh_port") or 22)
    if ssh_answers(host, port):
        return None
    return ConsoleFollower(path, sink, ready=lambda: ssh_answers(host, port),
                           running=lambda: inst.state == "running", timeout=timeout)


def show(inst: Instance, *, timeout: float = 120.0, widget: bool | None = None):
    """What `%cloud instance console NAME` shows: a live console while it boots (a widget
    in a notebook; on a terminal printed as it comes, until ready), else the log."""
    from nbcloud.ui.progress import in_notebook
    widget = in_notebook() if widget is None else widget
    if widget:
        follower = follower_for(inst, lambda _text: None, timeout)
        if follower is not None:
            return LiveConsole(inst.name, follower)
    else:
        def sink(text: str) -> None:
            print(text, end="", flush=True)
        follower = follower_for(inst, sink, timeout)
        if follower is not None:
            try:
                reason = follower.run()
            except KeyboardInterrupt:
                reason = "interrupted"
            return Message(f"\n(console of {inst.name} no longer followed: {reason})")
    return ConsoleLog(inst.name, inst.console())
