"""`%cloud form`: the instance create form (a widget) that shows the equivalent
`%cloud instance create ...` line as you fill it in, and runs it on Create."""
from __future__ import annotations


def add_parser(sub, name: str) -> None:
    sub.add_parser(name, help="a form for `instance create` showing its magic line")


def run(cloud, args, namespace):
    from nbcloud.ui.widgets.form import CreateForm
    return CreateForm(cloud, namespace)
