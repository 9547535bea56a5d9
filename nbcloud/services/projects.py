"""Projects for a class (`cloud.projects`): on an OpenStack cloud, for a teacher with the
admin role, one project, one user and quotas per student.

The user's password is made here (`secrets`) and written only into the student's own
clouds.yaml, `projects/NAME/clouds.yaml` under nbcloud's home (0600, its folder 0700),
whose cloud entry is NAME: hand that file to the student. No output, repr or log holds
the password; the inventory (kind `project`) keeps the quotas and the file's path.
"""
from __future__ import annotations

import html
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from nbcloud.context import Context
from nbcloud.core import config
from nbcloud.core.display import Table
from nbcloud.core.errors import NotFound
from nbcloud.core.spec import InvalidSpec, check_name, parse_size

KIND = "project"
#: quota words, their default for one student, and the largest a lab may ask
DEFAULT_QUOTAS = {"instances": 2, "cores": 2, "ram": "1G", "networks": 2, "routers": 1,
                  "floating_ips": 2, "ports": 10, "volumes": 2, "gigabytes": 4}
MAX_QUOTA = 1000


@dataclass(frozen=True)
class Project:
    """A student's project: its name (also the user's and the clouds.yaml entry's), its
    quotas, and the clouds.yaml that logs them in."""
    name: str
    quotas: dict
    clouds_file: Path

    def __str__(self) -> str:
        return (f"project {self.name}: user {self.name}, quotas "
                + ", ".join(f"{k} {v}" for k, v in self.quotas.items())
                + f"; credentials in {self.clouds_file}")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<b>project</b> {html.escape(str(self)[8:])}"


def check_quotas(quotas: dict | None) -> dict[str, int]:
    """One student's quotas: DEFAULT_QUOTAS with `quotas` over them, checked; RAM in MiB."""
    out = dict(DEFAULT_QUOTAS)
    for key, value in (quotas or {}).items():
        if key not in DEFAULT_QUOTAS:
            raise InvalidSpec(f"quota {key!r} is not one nbcloud sets: use "
                              + ", ".join(DEFAULT_QUOTAS))
        out[key] = value
    checked = {}
    for key, value in out.items():
        if key == "ram":
            checked[key] = parse_size(value, "ram quota") >> 20
            continue
        if isinstance(value, bool) or not isinstance(value, int) or \
                not 0 <= value <= MAX_QUOTA:
            raise InvalidSpec(f"quota {key} {value!r} is not allowed: a whole number from 0 "
                              f"to {MAX_QUOTA}")
        checked[key] = value
    return checked


def _folder(name: str) -> Path:
    base = config.home() / "projects"
    base.mkdir(mode=0o700, exist_ok=True)
    return base / name


class Projects:
    """`cloud.projects`: create, list, quotas, delete."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.provider = ctx.provider

    def create(self, name: str, quotas: dict | None = None, *,
               stack: str = "adhoc") -> Project:
        """Project and user `name` with `quotas`, and the student's clouds.yaml."""
        check_name(name, "project name")
        wanted = check_quotas(quotas)
        self.provider.require("projects")
        password = secrets.token_urlsafe(18)
        folder = _folder(name)
        with self.ctx.inventory.operation("create", KIND, name, **wanted) as op:
            made = self.provider.create_project(name, password, wanted)
            try:
                folder.mkdir(mode=0o700, exist_ok=True)
                path = folder / "clouds.yaml"
                entry = {"auth": {"auth_url": made["auth_url"], "username": name,
                                  "password": password, "project_name": name,
                                  "user_domain_name": "Default",
                                  "project_domain_name": "Default"},
                         "region_name": made["region_name"], "identity_api_version": 3}
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    yaml.safe_dump({"clouds": {name: entry}}, f)
            except OSError:
                self.provider.delete_project(name)
                raise
            self.ctx.inventory.put(KIND, name, state="active", stack=stack,
                                   spec={"quotas": wanted, "clouds_file": str(path),
                                         "project_id": made["project_id"]})
            op.detail = made["project_id"]
        return Project(name, wanted, path)

    def get(self, name: str) -> Project:
        row = self.ctx.inventory.get(KIND, check_name(name, "project name"))
        if row is None:
            raise NotFound(f"project {name!r} was not made here (see `cloud.projects.list()`)")
        return Project(name, row.spec["quotas"], Path(row.spec["clouds_file"]))

    def list(self) -> list[Project]:
        return [self.get(r.name) for r in self.ctx.inventory.all(KIND)]

    def quotas(self, name: str) -> dict[str, int]:
        """What the cloud holds for project `name` now (its own figures)."""
        return self.provider.project_quotas(check_name(name, "project name"))

    def login(self, name: str) -> str:
        """Log in as the student with their clouds.yaml: who the cloud says they are."""
        return self.provider.project_login(str(self.get(name).clouds_file), name)

    def table(self) -> Table:
        return Table(["project", "quotas", "credentials"],
                     [(p.name, ", ".join(f"{k} {v}" for k, v in p.quotas.items()),
                       str(p.clouds_file)) for p in self.list()], "projects")

    def delete(self, name: str) -> None:
        """Project and user `name` (refused while it holds anything), and its clouds.yaml."""
        check_name(name, "project name")
        with self.ctx.inventory.operation("delete", KIND, name):
            self.provider.delete_project(name)
            shutil.rmtree(_folder(name), ignore_errors=True)
            self.ctx.inventory.remove(KIND, name)
