"""Results shown in a notebook: plain text for the terminal, escaped HTML for Jupyter."""
from __future__ import annotations

import html
from collections.abc import Sequence


class Table:
    """Rows under column headers; what `list` verbs return."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[object]],
                 title: str = ""):
        self.columns = list(columns)
        self.rows = [["" if v is None else str(v) for v in row] for row in rows]
        self.title = title

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return (dict(zip(self.columns, row)) for row in self.rows)

    def __str__(self) -> str:
        widths = [max([len(c)] + [len(r[i]) for r in self.rows])
                  for i, c in enumerate(self.columns)]
        lines = [self.title] if self.title else []
        lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip())
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
                  for r in self.rows]
        if not self.rows:
            lines.append("(none)")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>"
                       for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(v)}</td>"
                                        for v in row) + "</tr>" for row in self.rows)
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        empty = "" if self.rows else "<i>(none)</i>"
        return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{empty}"


class Message:
    """A short result line (what changed), shown as text or a small HTML note."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"


def card(kind: str, name: str, rows: dict[str, object] | None) -> str:
    """One resource as HTML (what a handle's `_repr_html_` shows): its kind in bold, its
    name, then a row per field; `rows` None says the resource is gone."""
    head = f"<b>{html.escape(kind)}</b> {html.escape(name)}"
    if rows is None:
        return f"{head} (gone)"
    cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                    f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"{head}<table>{cells}</table>"
