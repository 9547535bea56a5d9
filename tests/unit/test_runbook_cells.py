"""The runbooks (notebooks/runbooks/) as documents: a papermill `parameters` cell with
safe defaults (nbval runs them with those, on both tiers), cells IPython can run, and the
`%%cloud ... --stack {name}` line they rely on expanding like a line magic's words."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from tests.needs import module
from IPython.core.inputtransformer2 import TransformerManager

RUNBOOKS = Path(__file__).resolve().parents[2] / "notebooks" / "runbooks"
BOOKS = ["lab-up", "leaks", "snapshot-stack", "health"]


def cells(book: str, kind: str = "code"):
    nb = nbformat.read(RUNBOOKS / f"{book}.ipynb", as_version=4)
    return [c for c in nb.cells if c.cell_type == kind]


def defaults(book: str) -> dict:
    params = [c for c in cells(book) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{book}: one cell tagged `parameters`"
    return {t.id: ast.literal_eval(v) for node in ast.parse(params[0].source).body
            for t, v in [(node.targets[0], node.value)]}


def test_there_are_the_four_runbooks():
    assert sorted(p.stem for p in RUNBOOKS.glob("*.ipynb")) == sorted(BOOKS)


@pytest.mark.parametrize("book", BOOKS)
def test_every_cell_is_valid_ipython(book):
    # a magic inside an expression (`f(%cloud x)`) only fails when the cell runs
    for cell in cells(book):
        compile(TransformerManager().transform_cell(cell.source), f"{book}.ipynb", "exec")


@pytest.mark.parametrize("book", BOOKS)
def test_papermill_sees_the_parameters(book):
    pm = module("papermill")
    assert set(pm.inspect_notebook(str(RUNBOOKS / f"{book}.ipynb"))) == set(defaults(book))


@pytest.mark.parametrize("book", BOOKS)
def test_each_ends_with_a_summary_cell(book):
    assert "summary" in cells(book)[-1].metadata.get("tags", [])
    assert "json.dumps(summary)" in cells(book)[-1].source


def test_defaults_are_cheap_and_leave_nothing():
    lab = defaults("lab-up")
    assert lab["students"] <= 2 and lab["teardown"] is True and lab["image"] == "tiny"
    assert lab["prefix"].startswith("rb-") and not lab["lab_cidr"]
    assert defaults("leaks")["dry_run"] is True          # lists, deletes nothing
    snap = defaults("snapshot-stack")
    assert snap["stack"] == "" and snap["demo"].startswith("rb-")   # its own demo stack
    assert "stack destroy {demo}" in "".join(c.source for c in cells("snapshot-stack"))
    assert defaults("health")["sample_seconds"] <= 10


def test_stack_cell_line_expands_variables(ip, unique):
    name = unique("rbst")
    ip.user_ns["stack_name"] = name
    ip.user_ns["inst"] = f"{name}-vm"
    plan = ip.run_cell_magic("cloud", "plan --stack {stack_name}",
                             "instance:\n  {inst}: {flavor: t.nano}\n")
    assert f"plan for stack {name}:" in str(plan) and f"instance {name}-vm" in str(plan)


def test_stack_cell_line_with_a_bad_expansion_is_one_line(ip):
    from IPython.core.error import UsageError
    ip.user_ns["bad"] = "No Such"
    with pytest.raises(UsageError, match="stack"):
        ip.run_cell_magic("cloud", "plan --stack {bad}", "instance:\n  x: {}\n")
