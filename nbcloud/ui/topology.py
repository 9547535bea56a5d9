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

from nbcloud.workflows.topology import (
    Graph,
    Layout,
    figure,
    graph_from,
    read_live,
    update_figure,
)

if TYPE_CHECKING:
    from nbcloud.api import Cloud

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
        self.graph: Graph = graph_from(cloud, self._seen, read_live(cloud), stack)
        self.figure = figure(self.graph, self.layout,
                             widget=widget_frontend() if widget is None else widget,
                             title=self.title)
        self.refreshes = 0
        self._drawn: list[dict] | None = None     # what the figure shows, once refreshed
        if live:
            register(self)

    @property
    def title(self) -> str:
        return f"topology of stack {self.stack}" if self.stack else "topology"

    def _inventory_now(self) -> list:
        return self.cloud.inventory.resources(self.cloud.uri)

    def refresh(self) -> Graph:
        """Read the inventory and libvirt again and redraw the figure in place."""
        with self._lock:
            self._seen = self._inventory_now()
            self.graph = graph_from(self.cloud, self._seen, read_live(self.cloud), self.stack)
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
    with _registry_lock:
        _live.clear()
        if _hooked is not None:
            try:
                _hooked.events.unregister("post_run_cell", _after_cell)
            except ValueError:
                pass  # unregistered already
            _hooked = None


def hooked() -> bool:
    return _hooked is not None
