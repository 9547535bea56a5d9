"""Plotly graphs of monitoring samples: the live view (a FigureWidget fed by the sampler)
and history (a static figure drawn from the inventory).

Four panels over one time axis: CPU % of the flavor's vCPUs, memory used, disk read/write
and network rx/tx; one colour per instance, writes and tx dashed.
"""
from __future__ import annotations

import datetime
import html
import time
from collections import deque
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from nbcloud.services.monitor import Monitor, Sample

# (sample field, panel row, label, scale to the panel's unit, dashed)
SERIES = (("cpu", 1, "cpu", 1.0, False),
          ("mem_used", 2, "mem", 2.0**-20, False),
          ("disk_rd", 3, "read", 1e-3, False), ("disk_wr", 3, "write", 1e-3, True),
          ("net_rx", 4, "rx", 1e-3, False), ("net_tx", 4, "tx", 1e-3, True))
PANELS = ("CPU % of vCPUs", "memory used (MiB)", "disk kB/s (write dashed)",
          "network kB/s (tx dashed)")


def empty_figure(names: list[str], widget: bool = False) -> go.Figure:
    """The four panels with one empty trace per (instance, series), in SERIES order."""
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=PANELS)
    colours = qualitative.Plotly
    for i, name in enumerate(names):
        colour = colours[i % len(colours)]
        for field, row, label, _scale, dashed in SERIES:
            fig.add_trace(go.Scatter(
                x=[], y=[], mode="lines", name=f"{name} {label}", legendgroup=name,
                line={"color": colour, "dash": "dash" if dashed else "solid"},
                hovertemplate=f"{html.escape(name)} {label}: %{{y:.1f}}<extra></extra>"),
                row=row, col=1)
    fig.update_xaxes(type="date")
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(range=[0, 105], row=1, col=1)
    fig.update_layout(height=640, margin={"l": 50, "r": 20, "t": 40, "b": 30},
                      legend={"orientation": "h", "y": -0.06})
    return go.FigureWidget(fig) if widget else fig


def x_of(t: float) -> str:
    """A sample's x: local time as an ISO date string, to the millisecond.

    Not epoch milliseconds: a FigureWidget shown before its first points arrive draws
    numbers sent later on its date axis as plain numbers (`1.796361328T`), though the
    axis says `type="date"`; date strings are read as dates wherever they arrive."""
    return datetime.datetime.fromtimestamp(t).isoformat(timespec="milliseconds")


def _points(samples: list[Sample]) -> dict[str, tuple[list, list]]:
    out = {}
    for field, _row, _label, scale, _dashed in SERIES:
        xs, ys = [], []
        for s in samples:
            value = getattr(s, field)
            xs.append(x_of(s.t))
            ys.append(None if value is None else round(value * scale, 2))
        out[field] = (xs, ys)
    return out


def history_figure(monitor: Monitor, names: list[str], since: float) -> go.Figure:
    """A static figure of the last `since` seconds of `names`, from the inventory."""
    fig = empty_figure(names)
    for i, name in enumerate(names):
        series = _points(monitor.history(name, since))
        for j, (field, *_rest) in enumerate(SERIES):
            xs, ys = series[field]
            fig.data[i * len(SERIES) + j].update(x=xs, y=ys)
    fig.update_layout(title=f"last {_duration(since)}: {', '.join(names)}")
    return fig


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class LiveView:
    """Live graphs of some watched instances: a FigureWidget updated with `batch_update()`
    from the sampler thread, a status line, and an Output for errors.

    Starts with the last `window` ticks already in the inventory, keeps `window` points
    per trace. `close()` detaches it from the sampler."""

    def __init__(self, monitor: Monitor, names: list[str], window: int = 120):
        import ipywidgets as widgets
        self.monitor = monitor
        self.names = list(names)
        self.figure = empty_figure(self.names, widget=True)
        self._series = {(name, field): (deque(maxlen=window), deque(maxlen=window))
                        for name in self.names for field, *_rest in SERIES}
        self.status = widgets.HTML()
        self.errors = widgets.Output()
        self.box = widgets.VBox([self.status, self.figure, self.errors])
        self.updates = 0
        for name in self.names:
            for s in monitor.history(name, window * monitor.interval):
                self._add(s)
        self._draw()
        monitor.add_listener(self._on_tick, self._on_error)

    def _add(self, sample: Sample) -> None:
        x = x_of(sample.t)
        for field, _row, _label, scale, _dashed in SERIES:
            value = getattr(sample, field)
            xs, ys = self._series[(sample.name, field)]
            xs.append(x)
            ys.append(None if value is None else round(value * scale, 2))

    def _draw(self) -> None:
        # one comm message per tick for every trace of the view
        with self.figure.batch_update():
            for i, name in enumerate(self.names):
                for j, (field, *_rest) in enumerate(SERIES):
                    xs, ys = self._series[(name, field)]
                    trace = self.figure.data[i * len(SERIES) + j]
                    trace.x, trace.y = list(xs), list(ys)
        last = [self.monitor.latest.get(n) for n in self.names]
        parts = [f"<b>{html.escape(s.name)}</b> {html.escape(s.state)}"
                 + (f" cpu {s.cpu:.0f}%" if s.cpu is not None else "")
                 for s in last if s is not None]
        note = self.monitor.note
        self.status.value = (f"sampling every {self.monitor.interval:g} s, "
                             f"{time.strftime('%H:%M:%S')}: " + "; ".join(parts)
                             + (f"<br><i>{html.escape(note)}</i>" if note else ""))

    def _on_tick(self, tick: dict[str, Sample]) -> None:
        mine = [tick[n] for n in self.names if n in tick]
        if not mine:
            return
        for sample in mine:
            if sample.state == "running":
                self._add(sample)
        self._draw()
        self.updates += 1

    def _on_error(self, exc: BaseException) -> None:
        # Output.append_* is safe from another thread, unlike `with output:` there
        self.errors.append_stderr(f"monitor: {exc}\n")

    def points(self, name: str, field: str) -> list:
        """The values the view holds for `name`'s `field` (None where there was no rate)."""
        return list(self._series[(name, field)][1])

    def snapshot(self) -> go.Figure:
        """A static copy of what the view shows now (for an HTML export or a report)."""
        fig = go.Figure(self.figure)
        fig.update_layout(title=f"live: {', '.join(self.names)} at "
                                f"{time.strftime('%H:%M:%S')}")
        return fig

    def close(self) -> None:
        self.monitor.remove_listener(self._on_tick)
        self.box.close()

    def __repr__(self) -> str:
        return f"<LiveView of {', '.join(self.names)}: {self.monitor!r}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{html.escape(s.state)}</td>"
            f"<td>{'-' if s.cpu is None else f'{s.cpu:.1f}'}</td></tr>"
            for n in self.names if (s := self.monitor.latest.get(n)) is not None)
        return ("<table><tr><th>instance</th><th>state</th><th>cpu %</th></tr>"
                f"{rows}</table>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.box._repr_mimebundle_(include=include, exclude=exclude) or {}
        bundle["text/plain"] = repr(self)
        return bundle
