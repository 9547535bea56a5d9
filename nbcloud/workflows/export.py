"""Exports of what the inventory knows: an Ansible inventory of the instances, the
stacks as the `%%cloud apply` cells they were last applied from, and a stack as a Heat
(HOT) template (heat.py).

Neither ever contains key material: the Ansible inventory names the path of each
instance's login key, never its contents.
"""
from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core.errors import NotFound
from nbcloud.core.spec import InvalidSpec
from nbcloud.services import keys

if TYPE_CHECKING:
    from nbcloud.services.catalog import Services


@dataclass(frozen=True)
class Export:
    """The text of an export; shown as is, or written to a file with `save`."""
    kind: str
    text: str

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        path.write_text(self.text)
        return path

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<b>{html.escape(self.kind)}</b><pre>{html.escape(self.text)}</pre>"


def ansible_group(stack: str) -> str:
    """Ansible group names are identifiers: `my-lab` -> `my_lab`."""
    return re.sub(r"\W", "_", stack)


def _key_path(name: str) -> str | None:
    try:
        key = keys.get_key(name)
    except (NotFound, InvalidSpec):
        return None
    return str(key.private_path) if key.has_private else None


def ansible(cloud: Services) -> Export:
    """An INI Ansible inventory: one group per stack, one host line per instance."""
    live = cloud.provider.managed()
    groups: dict[str, list[str]] = {}
    notes = []
    for r in cloud.inventory.all("instance"):
        meta = live.get(r.name)
        if meta is None:
            notes.append(f"# {r.name} (stack {r.stack}) is recorded but not in libvirt")
            continue
        if not meta.get("ip"):
            notes.append(f"# {r.name} (stack {r.stack}) has no address")
            continue
        line = f"{r.name} ansible_host={meta['ip']} ansible_user=root"
        key = _key_path(meta.get("key") or "default")
        if key is None:
            notes.append(f"# {r.name}: key {meta.get('key') or 'default'!r} has no private "
                         "file here; pass --private-key yourself")
        else:
            line += f" ansible_ssh_private_key_file={key}"
        groups.setdefault(ansible_group(r.stack), []).append(line)
    lines = [f"# nbcloud instances on {cloud.uri}, {time.strftime('%Y-%m-%d %H:%M:%S')}"]
    lines += notes
    for group in sorted(groups):
        lines += ["", f"[{group}]", *groups[group]]
    return Export("ansible inventory", "\n".join(lines) + "\n")


def cells(cloud: Services) -> Export:
    """Every stack's cell text, as the `%%cloud apply --stack NAME` cell to re-run."""
    parts = []
    for st in cloud.inventory.stacks():
        if st["source"] is None:
            continue
        parts.append(f"%%cloud apply --stack {st['name']}\n{st['source'].strip()}\n")
    return Export("stacks as cells", "\n".join(parts) if parts else "# no stacks applied\n")


def heat(cloud: Services, stack: str | None = None, namespace: dict | None = None) -> Export:
    """Stack `stack` (the only one, if not named) as a Heat template, from the cell it was
    last applied from (its `{var}`s read from `namespace`, as when it was applied)."""
    from nbcloud.core.stackfile import parse
    from nbcloud.workflows.heat import text
    applied = {st["name"]: st["source"] for st in cloud.inventory.stacks()
               if st["source"] is not None}
    if stack is None:
        if len(applied) != 1:
            raise InvalidSpec("name the stack to export with --stack NAME (applied stacks: "
                              f"{', '.join(sorted(applied)) or 'none'})")
        stack = next(iter(applied))
    if stack not in applied:
        raise NotFound(f"stack {stack!r} was never applied here (applied stacks: "
                       f"{', '.join(sorted(applied)) or 'none'})")
    default = cloud.provider.default_network
    decl = parse(applied[stack], namespace, stack, default_network=default)
    return Export(f"stack {stack} as a Heat template", text(decl, default_network=default))
