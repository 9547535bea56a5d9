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


# ----- creates: a stage per instance, with elapsed time (see launch.py) ---------------------
def describe_launch(watch, now: float | None = None) -> tuple[str, list[tuple[str, str, int]]]:
    """('1 of 2 SSH-ready, 4.1 s', [(name, 'booting 2.3 s', step), ...]) for a launch.Watch."""
    from nbcloud.services.launch import STAGES
    now = time.monotonic() if now is None else now
    stages = watch.stages()
    goal = "ready" if watch.wait else "started"
    done = sum(1 for stage, _ in stages.values() if stage == goal)
    rows = []
    for name in watch.names:
        stage, since = stages[name]
        step = len(STAGES) - 1 if stage in ("ready", "started") else (
            STAGES.index(stage) if stage in STAGES else 0)
        shown = "SSH-ready" if stage == "ready" else stage
        if stage in ("ready", "started", "failed"):
            rows.append((name, f"{shown} after {since - watch.start:.1f} s", step))
        else:
            rows.append((name, f"{shown} {now - since:.1f} s", step))
    word = "SSH-ready" if watch.wait else "started"
    return f"{done} of {len(watch.names)} {word}, {now - watch.start:.1f} s", rows


class LaunchText:
    """Creates on a terminal: one line, rewritten (a log file gets only the outcome)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.5):
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0

    def _tty(self) -> bool:
        return getattr(self.stream, "isatty", lambda: False)()

    def update(self, watch) -> None:
        now = time.monotonic()
        if not self._tty() or now - self._last < self.interval:
            return
        self._last = now
        head, rows = describe_launch(watch, now)
        line = f"create: {head} ({', '.join(f'{n} {what}' for n, what, _ in rows)})"
        self.stream.write("\r" + line[:160].ljust(80))
        self.stream.flush()

    def step(self, label: str, done: int, total: int, what: str) -> None:
        if self._tty():  # off a terminal the base's build is in the operations log
            StepText(self.stream).step(label, done, total, what)

    def finish(self, watch, message: str | None) -> None:
        # off a terminal the outcome is the result (or the Interrupted message) itself
        if self._tty():
            head, _ = describe_launch(watch)
            self.stream.write("\r" + f"create: {message or head}".ljust(80) + "\n")
            self.stream.flush()


class LaunchWidget:
    """Creates in a notebook: a bar per instance through its stages, elapsed time beside
    each, and a total line (shown on the first update)."""

    def __init__(self):
        self.box = None
        self.bars: dict = {}
        self.labels: dict = {}
        self.total = None

    def _build(self, watch) -> None:
        import ipywidgets as w
        from IPython.display import display

        from nbcloud.services.launch import STAGES
        self.total = w.HTML("")
        rows = []
        for name in watch.names:
            self.bars[name] = w.IntProgress(value=0, min=0, max=len(STAGES) - 1,
                                            description=name)
            self.labels[name] = w.Label("")
            row = w.HBox()
            row.children = (self.bars[name], self.labels[name])
            rows.append(row)
        self.box = w.VBox()
        self.box.children = (self.total, *rows)
        display(self.box)

    def step(self, label: str, done: int, total: int, what: str) -> None:
        if getattr(self, "_steps", None) is None:
            self._steps = StepWidget()
        self._steps.step(label, done, total, what)

    def update(self, watch) -> None:
        if self.box is None:
            self._build(watch)
        head, rows = describe_launch(watch)
        self.total.value = f"<b>create</b>: {head}"
        for name, what, step in rows:
            self.bars[name].value = step
            self.labels[name].value = what
            if what.startswith(("SSH-ready", "started")):
                self.bars[name].bar_style = "success"
            elif what.startswith("failed"):
                self.bars[name].bar_style = "danger"

    def finish(self, watch, message: str | None) -> None:
        self.update(watch)
        if message:
            self.total.value = f"<b>create</b>: {message}"
            for bar in self.bars.values():
                if bar.bar_style != "success":
                    bar.bar_style = "warning"


class StepText:
    """A job of a few named steps on a terminal (a warm base's build): a line per step."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.start = time.monotonic()

    def step(self, label: str, done: int, total: int, what: str) -> None:
        self.stream.write(f"{label}: {what} ({time.monotonic() - self.start:.1f} s)\n")
        self.stream.flush()


class StepWidget:
    """The same as a bar with the step's words and the elapsed time beside it."""

    def __init__(self):
        self.bars: dict = {}
        self.start = time.monotonic()

    def step(self, label: str, done: int, total: int, what: str) -> None:
        import ipywidgets as w
        from IPython.display import display
        if label not in self.bars:
            bar, text = w.IntProgress(value=0, min=0, max=max(total, 1),
                                      description="warm base"), w.Label("")
            row = w.HBox()
            row.children = (bar, text)
            display(row)
            self.bars[label] = (bar, text)
        bar, text = self.bars[label]
        bar.value = done
        text.value = f"{label}: {what}, {time.monotonic() - self.start:.1f} s"
        if total and done >= total:
            bar.bar_style = "success"
        elif not total:
            bar.bar_style = "danger"


def step_progress():
    """A progress for jobs of named steps: a widget bar in a notebook, else text lines."""
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401
            return StepWidget()
        except ImportError:
            pass
    return StepText()


def launch_progress():
    """The progress of instance creates for where we run: widget bars in a notebook, else
    a text line."""
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401
            return LaunchWidget()
        except ImportError:
            pass
    return LaunchText()


# ----- a migration: its phase (disks, memory) and how much of it is done ------------------
class PhaseProgress:
    """`progress(phase, fraction_or_None)` as a bar in a notebook, or one rewritten line
    on a terminal (a log file gets the outcome only)."""

    def __init__(self, label: str, stream: TextIO | None = None):
        self.label = label
        self.start = time.monotonic()
        self.stream = stream or sys.stderr
        self.bar = self.text = None
        if in_notebook() and stream is None:
            try:
                import ipywidgets as w
                from IPython.display import display
            except ImportError:
                return
            self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description=label)
            self.text = w.Label("")
            box = w.HBox()
            box.children = (self.bar, self.text)
            display(box)

    def __call__(self, phase: str, fraction: float | None) -> None:
        elapsed = time.monotonic() - self.start
        line = f"{phase}{'' if fraction is None else f' {100 * fraction:.0f}%'}, " \
               f"{elapsed:.1f} s"
        if self.bar is not None:
            if fraction is not None:
                self.bar.value = fraction
            self.text.value = line
            if phase == "done":
                self.bar.bar_style = "success"
            return
        if getattr(self.stream, "isatty", lambda: False)() or phase == "done":
            self.stream.write(f"\r{self.label}: {line}".ljust(60)
                              + ("\n" if phase == "done" else ""))
            self.stream.flush()
