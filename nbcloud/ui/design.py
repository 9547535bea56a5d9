"""`%cloud design`: the design palette, ipywidgets over a `Design` (workflows/design.py).

A row of palette buttons picks the kind of item, a name field and Add put it in; two
drop-downs and Connect join items; the drawing (the topology's figure code) and the stack
YAML update after every change; Apply applies the YAML as a stack, as
`%%cloud apply --stack NAME` would. Every widget action is also a method
(`add`, `connect`, `disconnect`, `remove`, `apply`), so a notebook or a test drives the same
model without clicking.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

from nbcloud.core.errors import CloudError
from nbcloud.core.spec import InvalidSpec, check_name
from nbcloud.ui.topology import figure, update_figure
from nbcloud.workflows.design import PALETTE, Design
from nbcloud.workflows.topology import Layout

if TYPE_CHECKING:
    from nbcloud.api import Cloud


class DesignPalette:
    """The palette: `d = %cloud design`, then `d.add("server", "web")`,
    `d.connect("web", "internet")`, `d.yaml()`, `d.apply()`."""

    def __init__(self, cloud: Cloud | None = None, stack: str = "design", *,
                 widget: bool | None = None):
        from nbcloud.ui.topology import widget_frontend
        self.design = Design(cloud.stacks if cloud is not None else None)
        self.stack = check_name(stack, "stack name")
        self.layout = Layout()
        self.figure = figure(self.design.graph(), self.layout,
                             widget=widget_frontend() if widget is None else widget,
                             title=self._title())
        self._ui = None
        self._drawn: list[dict] | None = None
        self.last_plan = None

    def _title(self) -> str:
        return f"design of stack {self.stack}"

    # ----- the model, redrawn after each change ---------------------------------------------
    def add(self, kind: str, name: str, **props):
        item = self.design.add(kind, name, **props)
        self._changed()
        return item

    def connect(self, a: str, b: str) -> None:
        self.design.connect(a, b)
        self._changed()

    def disconnect(self, a: str, b: str) -> None:
        self.design.disconnect(a, b)
        self._changed()

    def remove(self, name: str) -> None:
        self.design.remove(name)
        self._changed()

    def yaml(self) -> str:
        return self.design.yaml()

    def cell(self) -> str:
        return self.design.cell(self.stack)

    def apply(self, show=None):
        """Apply the design as stack `self.stack`; returns the applied Plan."""
        self.last_plan = self.design.apply(self.stack, show=show)
        return self.last_plan

    def _cell_or_problem(self) -> str:
        """The cell, or why the design is not a stack yet (a half-wired load balancer is a
        normal state while drawing, not an error to raise)."""
        try:
            return self.cell()
        except InvalidSpec as exc:
            return f"# not a stack yet: {exc}"

    def _changed(self) -> None:
        self._drawn = update_figure(self.figure, self.design.graph(), self.layout,
                                    self._title(), self._drawn)
        if self._ui is not None:
            self._sync_ui()

    # ----- widgets ----------------------------------------------------------------------------
    @property
    def widget(self):
        """The palette's VBox (built on first use)."""
        if self._ui is None:
            self._build_ui()
        return self._ui["box"]

    def _build_ui(self) -> None:
        import ipywidgets as w
        ui: dict = {}
        ui["kind"] = w.ToggleButtons(options=[(k.label, key) for key, k in PALETTE.items()],
                                     value="server", description="item")
        ui["name"] = w.Text(placeholder="name, e.g. web", description="name")
        ui["count"] = w.BoundedIntText(value=2, min=1, max=64, description="count")
        ui["add"] = w.Button(description="Add", button_style="primary")
        ui["a"] = w.Dropdown(description="connect")
        ui["b"] = w.Dropdown(description="to")
        ui["connect"] = w.Button(description="Connect")
        ui["remove"] = w.Button(description="Remove item")
        ui["yaml"] = w.HTML()
        ui["stack"] = w.Text(value=self.stack, description="stack")
        ui["apply"] = w.Button(description="Apply", button_style="success")
        ui["out"] = w.Output()
        ui["add"].on_click(lambda b: self._act(b, self._on_add))
        ui["connect"].on_click(lambda b: self._act(b, lambda: self.connect(
            ui["a"].value, ui["b"].value)))
        ui["remove"].on_click(lambda b: self._act(b, lambda: self.remove(ui["a"].value)))
        ui["apply"].on_click(lambda b: self._act(b, self._on_apply))
        ui["box"] = w.VBox([ui["kind"], w.HBox([ui["name"], ui["count"], ui["add"]]),
                            w.HBox([ui["a"], ui["b"], ui["connect"], ui["remove"]]),
                            self.figure, ui["yaml"], w.HBox([ui["stack"], ui["apply"]]),
                            ui["out"]])
        self._ui = ui
        self._sync_ui()

    def _sync_ui(self) -> None:
        ui = self._ui
        names = list(self.design.items)
        for key in ("a", "b"):
            keep = ui[key].value
            ui[key].options = names
            ui[key].value = keep if keep in names else (names[0] if names else None)
        ui["yaml"].value = f"<pre>{html.escape(self._cell_or_problem())}</pre>"

    def _on_add(self) -> None:
        ui = self._ui
        props = {"count": ui["count"].value} if ui["kind"].value == "composite" else {}
        self.add(ui["kind"].value, ui["name"].value.strip(), **props)
        ui["name"].value = ""

    def _on_apply(self) -> None:
        from IPython.display import display
        self.stack = check_name(self._ui["stack"].value.strip(), "stack name")
        self.apply(show=display)
        print(f"applied stack {self.stack}")

    def _act(self, button, action) -> None:
        """Run a click's action in the Output, the button disabled meanwhile; a user
        mistake is one line, anything else a traceback."""
        out = self._ui["out"]
        out.clear_output()
        button.disabled = True
        try:
            with out:
                try:
                    action()
                except (InvalidSpec, CloudError) as exc:
                    print(f"error: {exc}")
                except Exception:
                    from IPython import get_ipython
                    shell = get_ipython()
                    if shell is None:
                        raise
                    shell.showtraceback()
        finally:
            button.disabled = False

    # ----- display ------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def __repr__(self) -> str:
        return f"<DesignPalette stack {self.stack}: {len(self.design.items)} items, " \
               f"{len(self.design.links)} connections>\n{self._cell_or_problem()}"

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"
