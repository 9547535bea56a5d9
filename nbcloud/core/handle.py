"""The base of every resource handle (`Instance`, `Volume`, `Network`, ...).

A handle is a name plus the service that owns it; its fields are read live. Its text and
HTML representations show those fields, or "(gone)" when the resource no longer exists,
so a stale handle in a notebook never raises when it is displayed.
"""
from __future__ import annotations

from nbcloud.core.display import card
from nbcloud.core.errors import CloudError


class Handle:
    """A named resource of one service. Subclasses give `noun` and `rows()`."""

    noun = "resource"            # what the HTML card calls it ("load balancer")

    def __init__(self, service, name: str):
        self.service = service
        self.name = name

    def rows(self) -> dict[str, object]:
        """The live fields shown in the card; raises CloudError when the resource is gone."""
        raise NotImplementedError

    def summary(self, rows: dict[str, object]) -> str:
        """The text after the name in `repr`: key=value for every field."""
        return " ".join(f"{k.replace(' ', '_')}={v}" for k, v in rows.items())

    def __repr__(self) -> str:
        try:
            rows = self.rows()
        except CloudError:
            return f"<{type(self).__name__} {self.name} (gone)>"
        return f"<{type(self).__name__} {self.name} {self.summary(rows)}>"

    def _repr_html_(self) -> str:
        try:
            rows = self.rows()
        except CloudError:
            return card(self.noun, self.name, None)
        return card(self.noun, self.name, rows)
