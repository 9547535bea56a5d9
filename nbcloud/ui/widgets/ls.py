"""`%cloud ls`: the inventory as a table widget, filterable, with per-row instance actions.

Each action (start, stop, reboot, delete, console) runs in a worker thread so the notebook
stays responsive; the row's buttons are disabled while it runs, and an error is shown on
the row itself, as one line (`CloudError: ...`), never lost. `delete` asks for a second
click. Outside a widget frontend `%cloud ls` returns the same rows as a `Table`.

Driven from Python as from the mouse: `w.rows`, `w.filter("web")`, `w.click("web", "stop")`
(returns the action's Future), `w.row("web").error`.
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from nbcloud.core.display import Table
from nbcloud.ui.widgets import register

if TYPE_CHECKING:
    from nbcloud.api import Cloud

COLUMNS = ("kind", "name", "stack", "state", "detail")
ACTIONS = ("start", "stop", "reboot", "delete", "console")
WIDTHS = {"kind": "80px", "name": "140px", "stack": "90px", "state": "80px",
          "detail": "220px"}
CONFIRM_SECONDS = 5.0
_VERBING = {"start": "starting", "stop": "stopping", "reboot": "rebooting",
            "delete": "deleting", "console": "reading the console of"}


@dataclass(frozen=True)
class Row:
    """One inventory row, with live state for instances."""
    kind: str
    name: str
    stack: str
    state: str
    detail: str

    def matches(self, words: list[str]) -> bool:
        text = " ".join(asdict(self).values()).lower()
        return all(word in text for word in words)


def _detail(kind: str, spec: dict, live: dict | None) -> str:
    if kind == "instance":
        meta = (live or {}).get("meta", {})
        parts = [meta.get("ip", ""), meta.get("flavor") or spec.get("flavor", ""),
                 meta.get("image") or spec.get("image", "")]
        return " ".join(p for p in parts if p)
    keys = {"volume": ("size", "tier", "attached_to"), "network": ("cidr", "mode"),
            "pool": ("path",), "cdrom": ("attached_to",)}.get(kind, ())
    parts = []
    for key in keys:
        value = spec.get(key)
        if value in (None, ""):
            continue
        if key == "size" and isinstance(value, int):
            value = f"{value / 2**30:g} GiB"
        parts.append(f"on {value}" if key == "attached_to" else str(value))
    return " ".join(parts)


def inventory_rows(cloud: Cloud, kind: str | None = None) -> list[Row]:
    """The inventory's rows for this cloud; instances carry their live state (one pass
    over libvirt's domains), or 'missing' when their domain is gone."""
    resources = cloud.ctx.inventory.all(kind)
    live: dict[str, dict] = {}
    if any(r.kind == "instance" for r in resources):
        live = cloud.instances.live()
    # several hosts: an instance's row says its host (instances grouped by host), and one
    # whose host is down is lost, not missing
    several = any(r.kind == "host" for r in cloud.ctx.inventory.all("host"))
    lost = cloud.hosts.lost() if several else {}
    rows = []
    for r in resources:
        state, detail = r.state, _detail(r.kind, r.spec, live.get(r.name))
        if r.kind == "instance":
            info = live.get(r.name)
            if info is None:
                state = "lost" if r.name in lost else "missing"
            else:  # live, not the inventory's: a --no-wait create stays 'starting' there
                state = "running" if info["running"] else "stopped"
            if several:
                host = (info or {}).get("host") or lost.get(r.name) or r.spec.get("host", "?")
                detail = f"on {host} {detail}".rstrip()
        rows.append(Row(r.kind, r.name, r.stack, state, detail))
    if several:
        rows.sort(key=lambda row: (row.kind != "instance", row.kind,
                                   row.detail.split()[1] if row.kind == "instance" else "",
                                   row.name))
    return rows


def table(rows: list[Row]) -> Table:
    """The rows as a plain text / HTML table (no widget frontend)."""
    return Table(COLUMNS, [[getattr(r, c) for c in COLUMNS] for r in rows], "inventory")


class _RowView:
    """The widgets of one row: cells, action buttons, and an Output for errors/console."""

    def __init__(self, owner: LsWidget, row: Row):
        import ipywidgets as w
        self.owner = owner
        self.row = row
        self.error = ""
        self.running: str | None = None
        self.armed_at = 0.0
        self.future: concurrent.futures.Future | None = None
        self.cells = {c: w.Label(getattr(row, c), layout=w.Layout(width=WIDTHS[c]))
                      for c in COLUMNS}
        self.buttons = {}
        if row.kind == "instance":
            for verb in ACTIONS:
                b = w.Button(description=verb, layout=w.Layout(width="80px"),
                             tooltip=f"{verb} instance {row.name}")
                b.on_click(lambda _b, verb=verb: self.owner._pressed(self, verb))
                self.buttons[verb] = b
        self.output = w.Output()
        line = w.HBox()
        line.children = (*self.cells.values(), *self.buttons.values())
        self.box = w.VBox()
        self.box.children = (line, self.output)
        self._enable()

    def set_state(self, state: str) -> None:
        self.row = Row(self.row.kind, self.row.name, self.row.stack, state, self.row.detail)
        self.cells["state"].value = state

    def _enable(self) -> None:
        """Buttons off while an action runs; otherwise those that make sense now."""
        state = self.row.state
        allowed = {"start": state in ("stopped", "crashed"),
                   "stop": state in ("running", "starting", "paused"),
                   "reboot": state in ("running", "starting"),
                   "delete": True, "console": state not in ("missing", "lost")}
        for verb, button in self.buttons.items():
            button.disabled = self.running is not None or not allowed[verb]

    def disarm(self) -> None:
        self.armed_at = 0.0
        if "delete" in self.buttons:
            self.buttons["delete"].description = "delete"
            self.buttons["delete"].button_style = ""

    def show_error(self, verb: str, exc: BaseException) -> None:
        # one line, like showtraceback() for a UsageError: the class and the message
        self.error = f"{verb} {self.row.name} failed: {type(exc).__name__}: {exc}"
        self.output.append_stderr(self.error + "\n")


class LsWidget:
    """The inventory as a table widget with a filter box and per-row instance actions."""

    def __init__(self, cloud: Cloud, kind: str | None = None, filter_text: str = ""):
        import ipywidgets as w
        self.cloud = cloud
        self.kind = kind
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nbcloud-ls")
        self.views: dict[tuple[str, str], _RowView] = {}
        self.filter_box = w.Text(value=filter_text, placeholder="filter: name, kind, stack, "
                                 "state, address…", continuous_update=True,
                                 layout=w.Layout(width="320px"))
        self.filter_box.observe(lambda _change: self._apply_filter(), names="value")
        self.refresh_button = w.Button(description="refresh", icon="refresh",
                                       layout=w.Layout(width="100px"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.count = w.Label("")
        header = w.HBox()
        header.children = tuple(w.HTML(f"<b>{c}</b>", layout=w.Layout(width=WIDTHS[c]))
                                for c in COLUMNS)
        self.header = header
        self.body = w.VBox()
        top = w.HBox()
        top.children = (self.filter_box, self.refresh_button, self.count)
        self.box = w.VBox()
        self.box.children = (top, header, self.body)
        register(self)
        self.refresh()

    # ----- reading ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the inventory (and live states) again and redraw the rows."""
        rows = inventory_rows(self.cloud, self.kind)
        views = {}
        for row in rows:
            key = (row.kind, row.name)
            view = self.views.get(key)
            if view is not None and view.running is None:
                view.row = row
                for c in COLUMNS:
                    view.cells[c].value = getattr(row, c)
                view._enable()
            elif view is None:
                view = _RowView(self, row)
            views[key] = view
        self.views = views
        self.body.children = tuple(v.box for v in views.values())
        self._apply_filter()

    def _apply_filter(self) -> None:
        words = self.filter_box.value.lower().split()
        shown = 0
        for view in self.views.values():
            visible = view.row.matches(words)
            view.box.layout.display = "" if visible else "none"
            shown += visible
        total = len(self.views)
        self.count.value = (f"{shown} of {total} rows" if shown != total
                            else f"{total} rows")

    def filter(self, text: str) -> list[dict]:
        """Set the filter box to `text`; returns the rows now shown."""
        self.filter_box.value = text
        return self.rows

    @property
    def rows(self) -> list[dict]:
        """The rows the filter lets through, as dicts (kind, name, stack, state, detail)."""
        words = self.filter_box.value.lower().split()
        return [asdict(v.row) for v in self.views.values() if v.row.matches(words)]

    def row(self, name: str, kind: str = "instance") -> _RowView:
        try:
            return self.views[(kind, name)]
        except KeyError:
            raise KeyError(f"no {kind} row {name!r} in this table") from None

    # ----- acting -----------------------------------------------------------------------
    def click(self, name: str, verb: str) -> concurrent.futures.Future | None:
        """Press button `verb` of instance `name`'s row, as the mouse would. Returns the
        action's Future (None when the press only armed `delete`, or was ignored because
        the button is disabled)."""
        view = self.row(name)
        if verb not in view.buttons:
            raise KeyError(f"no {verb!r} button (the actions are {', '.join(ACTIONS)})")
        if view.buttons[verb].disabled:
            return None
        before = view.future
        view.buttons[verb].click()
        return view.future if view.future is not before else None

    def _pressed(self, view: _RowView, verb: str) -> None:
        if view.running is not None:
            return
        if verb == "delete" and time.monotonic() - view.armed_at > CONFIRM_SECONDS:
            view.armed_at = time.monotonic()
            view.buttons["delete"].description = "confirm?"
            view.buttons["delete"].button_style = "danger"
            return
        view.disarm()
        view.error = ""
        view.output.outputs = ()
        view.running = verb
        view._enable()
        view.cells["state"].value = f"{_VERBING[verb]}…" if verb != "console" else \
            view.row.state
        # the worker runs in a copy of this cell's context (ipykernel >= 7 keeps the
        # parent header there), so its widget updates land under the right cell
        context = contextvars.copy_context()
        view.future = self._pool.submit(context.run, self._act, view, verb)

    def _act(self, view: _RowView, verb: str) -> None:
        name = view.row.name
        try:
            inst = self.cloud.instances.get(name)
            if verb == "console":
                from nbcloud.ui import console
                view.output.append_display_data(console.show(inst, widget=True))
            elif verb == "delete":
                inst.delete()
            elif verb == "start":
                inst.start()
            elif verb == "stop":
                inst.stop()
            else:
                inst.reboot()
        except Exception as exc:  # noqa: BLE001  any error: shown on the row, not lost
            view.show_error(verb, exc)
        finally:
            view.running = None
            self._settle(view, verb)

    def _settle(self, view: _RowView, verb: str) -> None:
        """After an action: the row's live state, or the row gone after a delete."""
        name = view.row.name
        state = self.cloud.instances.state_of(name)
        gone = state is None
        state = state or "missing"
        if verb == "delete" and gone and not view.error:
            self.views.pop(("instance", name), None)
            self.body.children = tuple(v.box for v in self.views.values())
            self._apply_filter()
            return
        view.set_state(state)
        view._enable()

    def close_actions(self) -> None:
        """Stop taking actions; those queued are dropped (on unload)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ----- display ----------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def _repr_html_(self) -> str:
        return table([Row(**r) for r in self.rows])._repr_html_()

    def __repr__(self) -> str:
        return str(table([Row(**r) for r in self.rows]))
