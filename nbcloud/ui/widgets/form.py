"""`%cloud form`: a form for `instance create` that shows the equivalent magic line live.

The form never calls the API with values of its own: the Create button parses the line it
shows, exactly as `%cloud` would, and runs it. What a student sees is what ran, and can be
copied into a cell.
"""
from __future__ import annotations

import html
import shlex
from typing import TYPE_CHECKING

from nbcloud.core.errors import CloudError
from nbcloud.core.flavors import CATALOGUE, CUSTOM_MAX_VCPUS, check_fits, custom_flavor
from nbcloud.core.spec import InvalidSpec, check_name
from nbcloud.ui import commands

if TYPE_CHECKING:
    from nbcloud.api import Cloud


def magic_line(name: str, image: str = "tiny", flavor: str = "t.nano",
               networks: tuple[str, ...] | list[str] = (),
               volumes: tuple[str, ...] | list[str] = (), key: str = "default",
               count: int = 1, wait: bool = True, screen: bool = False,
               vcpus: int = 1, memory: str = "512M") -> str:
    """The `%cloud instance create` line for these values; defaults are left out. The
    flavor `custom` stands for a custom instance type of `vcpus` and `memory`."""
    words = ["%cloud", "instance", "create", name or "NAME"]
    if image != "tiny":
        words += ["--image", image]
    if flavor == CUSTOM:
        words += ["--vcpus", str(vcpus), "--memory", memory]
    elif flavor != "t.nano":
        words += ["--flavor", flavor]
    for net in networks:
        words += ["--network", net]
    for vol in volumes:
        words += ["--volume", vol]
    if key != "default":
        words += ["--key", key]
    if count != 1:
        words += ["--count", str(count)]
    if not wait:
        words.append("--no-wait")
    if screen:
        words.append("--screen")
    return " ".join(shlex.quote(w) for w in words)


#: the flavor menu's last entry: a custom instance type (vCPUs and memory fields appear)
CUSTOM = "custom"


def _names(items) -> list[str]:
    return [getattr(i, "name", str(i)) for i in items]


class CreateForm:
    """Name, image, flavor, networks, volumes, key (and count, wait, screen): the line they make,
    shown live, and a Create button that runs it."""

    def __init__(self, cloud: Cloud, namespace: dict | None = None):
        import ipywidgets as w
        self.cloud = cloud
        self.namespace = namespace
        self.result = None            # what the last Create returned
        self.error = ""               # the last Create's one-line error
        images = _names(cloud.images.list()) or ["tiny"]
        networks = _names(cloud.networks.list())
        volumes = [v.name for v in cloud.volumes.list() if not v.attached_to]
        keys = sorted(set(_names(cloud.keys.list())) | {"default"})
        style = {"description_width": "80px"}
        self.name = w.Text(description="name", placeholder="web", style=style)
        self.image = w.Dropdown(description="image", options=images,
                                value="tiny" if "tiny" in images else images[0], style=style)
        self.flavor = w.Dropdown(description="flavor", options=[*sorted(CATALOGUE), CUSTOM],
                                 value="t.nano", style=style)
        hidden = w.Layout(display="none")
        self.vcpus = w.BoundedIntText(description="vCPUs", value=1, min=1,
                                      max=CUSTOM_MAX_VCPUS, style=style, layout=hidden)
        self.memory = w.Text(description="memory", value="512M", placeholder="512M or 2G",
                             style=style, layout=w.Layout(display="none"))
        self.networks = w.SelectMultiple(description="networks", options=networks,
                                         value=tuple(n for n in networks if n == "nbcloud"),
                                         rows=min(max(len(networks), 2), 5), style=style)
        self.volumes = w.SelectMultiple(description="volumes", options=volumes,
                                        rows=min(max(len(volumes), 2), 5), style=style)
        self.key = w.Dropdown(description="key", options=keys, value="default", style=style)
        self.count = w.BoundedIntText(description="count", value=1, min=1, max=20,
                                      style=style)
        self.wait = w.Checkbox(description="wait for SSH", value=True, indent=False)
        self.screen = w.Checkbox(description="VGA screen (for screenshots)", value=False,
                                 indent=False)
        self.line = w.HTML()
        self.button = w.Button(description="Create", button_style="primary", icon="play")
        self.button.on_click(lambda _b: self.create())
        self.output = w.Output()
        fields = (self.name, self.image, self.flavor, self.vcpus, self.memory, self.networks,
                  self.volumes, self.key, self.count, self.wait, self.screen)
        for field in fields:
            field.observe(lambda _change: self._update(), names="value")
        self.box = w.VBox()
        self.box.children = (*fields, self.line, self.button, self.output)
        self._update()

    def values(self) -> dict:
        return {"name": self.name.value.strip(), "image": self.image.value,
                "flavor": self.flavor.value, "networks": tuple(self.networks.value),
                "volumes": tuple(self.volumes.value), "key": self.key.value,
                "count": self.count.value, "wait": self.wait.value,
                "screen": self.screen.value, "vcpus": self.vcpus.value,
                "memory": self.memory.value.strip()}

    @property
    def magic(self) -> str:
        """The `%cloud instance create ...` line the form stands for now."""
        return magic_line(**self.values())

    def problem(self) -> str:
        """Why the form cannot create yet ('' when it can)."""
        values = self.values()
        if not values["name"]:
            return "give the instance a name"
        try:
            check_name(values["name"], "instance name")
        except InvalidSpec as exc:
            return str(exc)
        if values["volumes"] and values["count"] != 1:
            return "a data volume attaches to one instance: use volumes with count 1"
        if values["flavor"] == CUSTOM:
            try:  # the same limits as the magic's: the grammar's, then the host's
                flavor = custom_flavor(values["vcpus"], values["memory"])
                check_fits(flavor, *self.cloud.provider.capacity())
            except InvalidSpec as exc:
                return str(exc)
        return ""

    def _update(self) -> None:
        custom = self.flavor.value == CUSTOM
        for field in (self.vcpus, self.memory):
            field.layout.display = None if custom else "none"
        problem = self.problem()
        line = f"<code>{html.escape(self.magic)}</code>"
        if problem:
            line += f"<br><span style='color:#b00'>{html.escape(problem)}</span>"
        self.line.value = line
        self.button.disabled = bool(problem)

    def create(self):
        """Run the line the form shows (as the Create button does); returns its result.
        Errors are shown under the form as one line, and kept in `error`."""
        self.error = ""
        self.result = None
        problem = self.problem()
        if problem:
            self.error = problem
            self.output.append_stderr(problem + "\n")
            return None
        line = self.magic
        self.button.disabled = True
        self.output.outputs = ()
        # the create's progress bars land under the form; the errors are caught inside
        # the block, which would otherwise show them as a whole traceback
        with self.output:
            try:
                args = commands.parse(shlex.split(line)[1:])
                self.result = commands.run(self.cloud, args, self.namespace)
            except (commands.CommandError, CloudError, InvalidSpec,
                    KeyboardInterrupt) as exc:
                # one line, as the magic shows a UsageError; Interrupted says what is left
                self.error = f"{type(exc).__name__}: {exc}"
        if self.error:
            self.output.append_stderr(self.error + "\n")
        else:
            self.output.append_stdout(f"{line}\n")
            self.output.append_display_data(self.result)
        self._update()
        return self.result

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return f"<create form: {self.magic}>"
