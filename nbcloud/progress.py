"""Byte progress for long transfers: a bar in a notebook, one rewritten line on a terminal.

A progress is a callable `progress(done_bytes, total_bytes_or_None)`; the caller calls it
as bytes arrive and once more with `done == total` when it has finished, so the CLI and
the magic share one protocol and tests can pass a plain function.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ByteProgress = Callable[[int, "int | None"], None]


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def describe(done: int, total: int | None, elapsed: float) -> str:
    """'12.0 MiB of 48.0 MiB (25%), 3.1 s' (or without the total when it is unknown)."""
    if total:
        return (f"{_mib(done)} of {_mib(total)} ({100 * done // total}%), "
                f"{elapsed:.1f} s")
    return f"{_mib(done)}, {elapsed:.1f} s"


class TextProgress:
    """One line on a terminal, rewritten at most every `interval` seconds."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 0.25):
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        self.start = time.monotonic()
        self._last = 0.0
        self._ended = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if self._ended or (not final and now - self._last < self.interval):
            return
        self._last = now
        tty = getattr(self.stream, "isatty", lambda: False)()
        line = f"{self.label}: {describe(done, total, now - self.start)}"
        if tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final:  # a log file gets the outcome only, not a line per tick
            self.stream.write(line + "\n")
        self.stream.flush()
        self._ended = final


class WidgetProgress:
    """An ipywidgets bar with bytes and elapsed time beside it (shown on creation)."""

    def __init__(self, label: str):
        import ipywidgets as w
        from IPython.display import display
        self.start = time.monotonic()
        self._last = 0.0
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description=label)
        self.text = w.Label("")
        box = w.HBox()
        box.children = (self.bar, self.text)
        display(box)

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self._last < 0.2:
            return
        self._last = now
        if total:
            self.bar.value = min(done / total, 1.0)
        self.text.value = describe(done, total, now - self.start)
        if final:
            self.bar.value = 1.0
            self.bar.bar_style = "success"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where widgets render), False on a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def byte_progress(label: str) -> ByteProgress:
    """The right progress for where we run: a widget bar in a notebook, else a text line."""
    if in_notebook():
        try:
            return WidgetProgress(label)
        except ImportError:
            pass
    return TextProgress(label)
