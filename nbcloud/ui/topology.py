"""`LiveTopology`: a topology figure that redraws itself in place.

It redraws after every cell that changed the inventory (IPython's `post_run_cell` event,
hooked while at least one live topology exists and unhooked on `%unload_ext nbcloud`), and
whenever `refresh()` is called, e.g. by the monitor thread on a state change. In a kernel
with a widget front end the figure is a `FigureWidget` updated with `batch_update()` (one
message, no re-display); elsewhere it is a plain `go.Figure`, updated in place all the same.
"""
from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING

from nbcloud.core.events import INSTANCE_STATE
from nbcloud.workflows.topology import (
    Graph,
    Layout,
    figure_layout,
    graph_from,
    read_live,
    traces,
)

if TYPE_CHECKING:
    from nbcloud.api import Cloud

def figure(graph: Graph, layout: Layout | None = None, *, widget: bool = False,
           title: str = "topology"):
    """A Plotly figure of `graph` (a FigureWidget if `widget`)."""
    import plotly.graph_objects as go
    layout = layout or Layout()
    data = traces(graph, layout)
    if widget:
        # Validated: an unvalidated FigureWidget sets what it is given in Python only and
        # sends the front end nothing, so a drawing shown before its first items arrived
        # stayed empty in the browser (the design palette's, the live topology's).
        return go.FigureWidget(data=data, layout=figure_layout(layout, title))
    # A static figure is built above from a fixed schema, not from user input: Plotly's
    # per-element validation would cost ~0.4 ms a node (a 500-node figure: ~200 ms instead
    # of ~20 ms, bench/topology.py).
    return go.Figure(data=data, layout=figure_layout(layout, title), _validate=False)


def update_figure(fig, graph: Graph, layout: Layout, title: str | None = None,
                  drawn: list[dict] | None = None) -> list[dict]:
    """Redraw `fig` in place (one message to the front end for a FigureWidget). `drawn` is
    what the last call returned: only the properties that differ from it are sent, since
    Plotly's update costs far more than comparing lists (most traces do not change)."""
    kinds = [t.meta for t in fig.data[1:]]
    missing = sorted({k for k, _ in graph.nodes} - set(kinds))
    data = traces(graph, layout, kinds + missing)
    page = figure_layout(layout, title or fig.layout.title.text or "")
    with fig.batch_update():
        for i, (trace, new) in enumerate(zip(fig.data, data)):
            old = drawn[i] if drawn is not None and i < len(drawn) else {}
            changed = {k: v for k, v in new.items() if k != "type" and old.get(k) != v}
            if changed:
                trace.update(changed)
        if fig.layout.height != page["height"] or fig.layout.title.text != page["title"]["text"]:
            # more rows: taller, and the y range that keeps a row's pixels the same
            fig.update_layout(height=page["height"], title=page["title"],
                              yaxis_range=page["yaxis"]["range"])
    if missing:  # a kind first seen now: traces can only be added outside batch_update
        fig.add_traces(data[len(fig.data):])
    return data


_live: set[LiveTopology] = set()
_hooked = None               # the shell whose post_run_cell event we registered with
_registry_lock = threading.Lock()


def widget_frontend() -> bool:
    """Whether figures can be widgets here: a Jupyter kernel (not a terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LiveTopology:
    """The topology of `cloud` (of one stack if `stack`), kept up to date.

    >>> topo = LiveTopology(cloud)      # what `%cloud topology` returns
    >>> topo.refresh()                  # redraw now (thread-safe)
    """

    def __init__(self, cloud: Cloud, stack: str | None = None, *,
                 widget: bool | None = None, live: bool = True):
        self.cloud = cloud
        self.stack = stack
        self.layout = Layout()
        self._lock = threading.Lock()
        self._seen = self._inventory_now()
        self.graph: Graph = graph_from(cloud.services, self._seen, read_live(cloud.services),
                                       stack)
        self.figure = figure(self.graph, self.layout,
                             widget=widget_frontend() if widget is None else widget,
                             title=self.title)
        self.refreshes = 0
        self._drawn: list[dict] | None = None     # what the figure shows, once refreshed
        self._unsubscribe = None
        if live:
            register(self)
            # the monitor says when an instance changed state behind the inventory's back
            self._unsubscribe = cloud.ctx.events.on(INSTANCE_STATE,
                                                    lambda names: self.refresh())

    @property
    def title(self) -> str:
        return f"topology of stack {self.stack}" if self.stack else "topology"

    def _inventory_now(self) -> list:
        return self.cloud.ctx.inventory.all()

    def refresh(self) -> Graph:
        """Read the inventory and libvirt again and redraw the figure in place."""
        with self._lock:
            self._seen = self._inventory_now()
            self.graph = graph_from(self.cloud.services, self._seen,
                                    read_live(self.cloud.services), self.stack)
            self._drawn = update_figure(self.figure, self.graph, self.layout, self.title,
                                        self._drawn)
            self.refreshes += 1
            return self.graph

    def refresh_if_changed(self) -> bool:
        """Redraw if the inventory changed since the last drawing; True if it did."""
        if self._inventory_now() == self._seen:
            return False
        self.refresh()
        return True

    def close(self) -> None:
        """Stop following changes (the figure stays as it is)."""
        unregister(self)

    # ----- display --------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.figure)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.graph.counts().items()) or "nothing"
        return f"<LiveTopology {self.stack or 'all stacks'}: {counts}; " \
               f"{len(self.graph.edges)} connections>"

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"


# ----- the post_run_cell hook -------------------------------------------------------------------
def _after_cell(result=None) -> None:
    for topo in list(_live):
        try:
            topo.refresh_if_changed()
        except Exception as exc:  # noqa: BLE001 — a closed connection must not break cells
            # the cloud it draws was closed (`%cloud connect` again) or its host is gone:
            # say so once and stop following it, rather than a traceback after every cell
            unregister(topo)
            print(f"nbcloud: the live topology stopped following changes ({exc})")


def register(topo: LiveTopology) -> None:
    global _hooked
    with _registry_lock:
        _live.add(topo)
        if _hooked is None:
            try:
                from IPython import get_ipython
                shell = get_ipython()
            except ImportError:
                shell = None
            if shell is not None:
                shell.events.register("post_run_cell", _after_cell)
                _hooked = shell


def unregister(topo: LiveTopology) -> None:
    with _registry_lock:
        _live.discard(topo)
    if topo._unsubscribe is not None:
        topo._unsubscribe()
        topo._unsubscribe = None


def live_topologies() -> list[LiveTopology]:
    return list(_live)


def refresh_all(cloud: Cloud | None = None) -> int:
    """Redraw every live topology (of `cloud`, if given) now; returns how many. For the
    monitor thread when it sees an instance change state behind the inventory's back."""
    done = 0
    for topo in live_topologies():
        if cloud is None or topo.cloud is cloud:
            topo.refresh()
            done += 1
    return done


def unload(shell=None) -> None:
    """Forget every live topology and unhook `post_run_cell` (`%unload_ext nbcloud`)."""
    global _hooked
    for topo in list(_live):
        unregister(topo)
    with _registry_lock:
        if _hooked is not None:
            try:
                _hooked.events.unregister("post_run_cell", _after_cell)
            except ValueError:
                pass  # unregistered already
            _hooked = None


def hooked() -> bool:
    return _hooked is not None
