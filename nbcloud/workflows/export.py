"""Exports of what the inventory knows: an Ansible inventory of the instances, the
stacks as the `%%cloud apply` cells they were last applied from, and a stack as a Heat
(HOT) template (heat.py).

Neither ever contains secret key material: the Ansible inventory names the path of each
instance's login key, never its contents; the host keys nbcloud pinned (public keys) go to a
known_hosts file the inventory points Ansible at, with strict host-key checking.
"""
from __future__ import annotations

import html
import ipaddress
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core import config
from nbcloud.core.errors import NotFound
from nbcloud.core.spec import InvalidSpec
from nbcloud.services import keys, ssh

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


def known_hosts_line(host: str, port: int, public: str) -> str:
    """One OpenSSH known_hosts line for a pinned key (`[host]:port` off port 22); the key
    is parsed first, so a malformed metadata value never reaches the file."""
    kind, blob = ssh.public_key_fields(public)
    address = str(ipaddress.ip_address(host))
    return f"{address if port == 22 else f'[{address}]:{port}'} {kind} {blob}"


def known_hosts_path(output: str | Path | None) -> Path:
    """Where the pinned keys go: beside the inventory file (`hosts.ini` ->
    `hosts.known_hosts`), or nbcloud's own copy when the inventory is only shown."""
    if output is None:
        return config.home() / "ansible.known_hosts"
    return Path(output).expanduser().absolute().with_suffix(".known_hosts")


def ansible(cloud: Services, output: str | Path | None = None) -> Export:
    """An INI Ansible inventory: one group per stack, one host line per running instance,
    with the host keys nbcloud pinned written to a known_hosts file that the inventory
    points Ansible at, strict host-key checking on (`known_hosts_path(output)`)."""
    live = cloud.provider.managed()
    states = cloud.provider.domain_states()
    groups: dict[str, list[str]] = {}
    notes, pinned = [], []
    for r in cloud.inventory.all("instance"):
        meta = live.get(r.name)
        if meta is None:
            notes.append(f"# {r.name} (stack {r.stack}) is recorded but not in libvirt")
            continue
        if states.get(r.name) != "running":
            notes.append(f"# {r.name} (stack {r.stack}) is {states.get(r.name, 'unknown')}, "
                         "not running: left out")
            continue
        if not meta.get("ip"):
            notes.append(f"# {r.name} (stack {r.stack}) has no address")
            continue
        port = int(meta.get("ssh_port") or 22)
        try:
            pinned.append(known_hosts_line(meta["ip"], port, meta.get("hostkey", "")))
        except ValueError:
            notes.append(f"# {r.name} (stack {r.stack}) has no pinned host key (pin it with "
                         f"`%cloud adopt {r.name} --ssh`): left out")
            continue
        user = meta.get("ssh_user") or "root"
        line = f"{r.name} ansible_host={meta['ip']} ansible_user={shlex.quote(user)}"
        if port != 22:
            line += f" ansible_port={port}"
        key = _key_path(meta.get("key") or "default")
        if key is None:
            notes.append(f"# {r.name}: key {meta.get('key') or 'default'!r} has no private "
                         "file here; pass --private-key yourself")
        else:
            line += f" ansible_ssh_private_key_file={shlex.quote(key)}"
        groups.setdefault(ansible_group(r.stack), []).append(line)
    path = known_hosts_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in sorted(pinned)))
    ssh_args = (f"-o UserKnownHostsFile={shlex.quote(str(path))} "
                "-o StrictHostKeyChecking=yes")
    lines = [f"# nbcloud instances on {cloud.uri}, {time.strftime('%Y-%m-%d %H:%M:%S')}",
             f"# host keys pinned by nbcloud: {path}"]
    lines += notes
    lines += ["", "[all:vars]", f"ansible_ssh_common_args={shlex.quote(ssh_args)}"]
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
