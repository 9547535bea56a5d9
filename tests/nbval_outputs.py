"""A pytest plugin for the notebook tier: a cell whose output says that it failed fails.

nbval (`--nbval-lax`) fails a cell only when the kernel reports an exception; a cell that
printed a traceback, wrote to stderr, or showed a command's `[exit status N]` with N != 0
passed, though a reader sees that it failed (`%cloud instance ssh ... -- cmd` returns the
command's output and status rather than raising). With this plugin (`-p tests.nbval_outputs`,
as scripts/test.sh and scripts/session-tier.sh run the notebooks) such a cell fails, with
what it showed.

A cell that is meant to show a failure says so with a tag: `raises-exception` (nbval's own:
the cell may raise) or `nbcloud-stderr-ok` (the cell may write to stderr or show a non-zero
exit status; it must still not raise).
"""
from __future__ import annotations

import re

import pytest

ALLOWED_TAGS = frozenset({"raises-exception", "nbcloud-stderr-ok"})
EXIT_STATUS = re.compile(r"\[exit status ([1-9]\d*)\]")
TRACEBACK = "Traceback (most recent call last)"


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(str(data.get(mime, "")) for mime in ("text/plain", "text/html"))


def failures(outputs) -> list[str]:
    """What in a cell's outputs says that it failed (empty when nothing does)."""
    found = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "error":
            found.append(f"an error: {out.get('ename')}: {out.get('evalue')}")
            continue
        if kind == "stream" and out.get("name") == "stderr":
            found.append(f"stderr: {out.get('text', '')[:500]!r}")
            continue
        text = _text(out)
        if TRACEBACK in text:
            found.append(f"a traceback in its output: {text[:500]!r}")
        status = EXIT_STATUS.search(text)
        if status:
            found.append(f"a command's exit status {status.group(1)}: {text[:300]!r}")
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)
    cell = getattr(item, "cell", None)
    if outputs is None or cell is None:  # not a notebook cell
        return result
    if set(cell.metadata.get("tags", [])) & ALLOWED_TAGS:
        return result
    found = failures(outputs)
    if found:
        item.raise_cell_error("Cell output shows a failure (tag the cell "
                              "`nbcloud-stderr-ok` if it is meant to)", "\n".join(found))
    return result
