"""`%cloud ls [WORDS ...] [--kind K] [--table]`: the inventory, as a table widget with
per-row actions in a notebook, else as a text/HTML table; WORDS filter the rows."""
from __future__ import annotations


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name)
    p.add_argument("words", nargs="*", help="show only rows containing every word")
    p.add_argument("--kind", help="only this kind of resource (instance, volume, ...)")
    p.add_argument("--table", action="store_true",
                   help="a plain table even where widgets render")


def run(cloud, args, namespace):
    from nbcloud.ui.progress import in_notebook
    from nbcloud.ui.widgets import ls
    text = " ".join(args.words)
    if in_notebook() and not args.table:
        return ls.LsWidget(cloud, args.kind, text)
    words = text.lower().split()
    return ls.table([r for r in ls.inventory_rows(cloud, args.kind) if r.matches(words)])
