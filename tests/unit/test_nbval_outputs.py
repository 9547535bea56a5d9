"""The notebook tier's plugin (tests/nbval_outputs.py): nbval --nbval-lax passes a cell
whose output says that it failed; with the plugin such a cell fails, unless tagged."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[2]
CELLS = [
    ("print('fine')", []),
    ("import sys; print('oops', file=sys.stderr)", []),
    ("print('grep: name: No such file or directory\\n[exit status 2]')", []),
    ("print('Traceback (most recent call last):\\n  File x')", []),
    ("import sys; print('expected', file=sys.stderr)", ["nbcloud-stderr-ok"]),
    ("print('[exit status 0] is not a failure')", []),
    ("raise ValueError('meant')", ["raises-exception"]),
]


def run(tmp_path, *plugin) -> dict[int, str]:
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags})
                             for src, tags in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "cells.ipynb"
    nbformat.write(nb, path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin, "--nbval-lax",
         "-rA", "-q", "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
         str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
             "HOME": str(tmp_path)})
    outcome = {}
    for line in out.stdout.splitlines():
        for word in ("PASSED", "FAILED"):
            if line.startswith(word) and "::Cell " in line:
                outcome[int(line.split("::Cell ")[1].split()[0])] = word
    assert len(outcome) == len(CELLS), out.stdout[-3000:] + out.stderr[-2000:]
    return outcome


def test_cells_that_show_a_failure_fail_unless_tagged(tmp_path):
    got = run(tmp_path, "-p", "tests.nbval_outputs")
    assert got == {0: "PASSED", 1: "FAILED", 2: "FAILED", 3: "FAILED", 4: "PASSED",
                   5: "PASSED", 6: "PASSED"}


def test_without_the_plugin_nbval_lax_passes_them_all(tmp_path):
    # what the notebook tier did before: the first notebook's `[exit status 2]` passed
    assert set(run(tmp_path).values()) == {"PASSED"}
