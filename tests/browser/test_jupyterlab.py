"""What a newcomer sees: real JupyterLab in Debian's headless Chromium, driven by Playwright
(npm's playwright-core, tests/browser/package.json), runs the first notebook and every course
notebook with the menu's Run > Run All Cells, on the real daemon.

Every code cell must have run; no output area may show an error, a traceback, a stderr
stream or a non-zero `[exit status N]` (a cell tagged `raises-exception` or
`nbcloud-stderr-ok` may: tests/nbval_outputs.py); every Plotly figure must have drawn data
in its SVG; the monitor's time axis must be labelled with clock times.

JupyterLab runs in a folder of its own with copies of the notebooks (it autosaves), its own
settings, workspaces and IPython folder, on a free loopback port with a random token; each
notebook's kernel is shut down after it. `NBCLOUD_TEST_NOTEBOOKS=DIR` runs the copies under
DIR instead (the same relative paths), e.g. with names of one's own on a shared daemon.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.jupyter_server import stop, wait_answering
from tests.needs import missing, program

HERE = Path(__file__).resolve().parent
NOTEBOOKS = Path(os.environ.get("NBCLOUD_TEST_NOTEBOOKS")
                 or HERE.parents[1] / "notebooks")
SHOWN = ["01-first-instance.ipynb", *sorted(
    str(p.relative_to(NOTEBOOKS)) for p in (NOTEBOOKS / "course").glob("*.ipynb"))]
#: seconds one notebook may take from Run All Cells to the last cell (the longest, 02 and
#: 05, take about 2 min under TCG on a loaded 2-core machine)
NOTEBOOK_TIMEOUT = 600
# what a failed command or cell leaves in an output area
FAILED = re.compile(r"Traceback \(most recent call last\)|\[exit status [1-9]\d*\]"
                    r"|Error displaying widget")
# a time-axis tick label: 11:25:22 or 11:25 (the first may carry the date after it)
CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?")
ALLOWED_TAGS = {"raises-exception", "nbcloud-stderr-ok"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET"):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory, cloud):
    """JupyterLab serving copies of the notebooks: (base URL, token, its folder)."""
    node = program("node", "the browser tier drives Chromium with Node.js")
    program("chromium", "Debian package chromium (scripts/setup.sh installs it)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing("playwright-core is not installed in tests/browser (scripts/setup.sh runs "
                "npm ci there)")
    root = tmp_path_factory.mktemp("lab")
    served = root / "notebooks"
    for rel in SHOWN:
        (served / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NOTEBOOKS / rel, served / rel)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, NBCLOUD_HOME=str(tmp_path_factory.getbasetemp() / "nbcloud-home"),
               JUPYTER_CONFIG_DIR=str(root / "config"),
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), IPYTHONDIR=str(root / "ipython"))
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={served}",
         "--allow-root", f"--LabApp.user_settings_dir={root / 'settings'}",
         f"--LabApp.workspaces_dir={root / 'workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_answering(proc, base, token, root / 'lab.log')
    yield base, token, root, node
    stop(proc)
    log.close()


def run_all_cells(lab, notebook: str) -> dict:
    """The page's report after Run All Cells (tests/browser/run_all_cells.mjs)."""
    base, token, root, node = lab
    shot = root / (notebook.replace("/", "_") + ".png")
    job = {"url": f"{base}/lab/tree/{notebook}?reset&token={token}",
           "timeout": NOTEBOOK_TIMEOUT, "screenshot": str(shot),
           "chromium": shutil.which("chromium")}
    try:
        done = subprocess.run([node, str(HERE / "run_all_cells.mjs"), json.dumps(job)],
                              capture_output=True, text=True, cwd=HERE,
                              timeout=NOTEBOOK_TIMEOUT + 240)
    finally:  # its kernel goes, whatever happened (the next notebook starts afresh)
        for session in _get(f"{base}/api/sessions?token={token}") or []:
            _get(f"{base}/api/sessions/{session['id']}?token={token}", "DELETE")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    report["screenshot"] = str(shot)
    return report


def tags(notebook: str) -> list[set[str]]:
    import nbformat
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    return [set(c.metadata.get("tags", [])) for c in nb.cells if c.cell_type == "code"]


def problems(report: dict, cell_tags: list[set[str]]) -> list[str]:
    """Every way the page shows that something failed."""
    found = []
    if report.get("error"):
        found.append(f"the browser run failed: {report['error']}")
    if not report["finished"]:
        found.append(f"the notebook did not finish within {NOTEBOOK_TIMEOUT} s")
    for i, cell in enumerate(report["cells"]):
        where = f"cell {i} ({cell['source'][:60]!r})"
        if not re.fullmatch(r"\[\d+\]:", cell["prompt"]):
            found.append(f"{where} did not run (prompt {cell['prompt']!r})")
        if i < len(cell_tags) and cell_tags[i] & ALLOWED_TAGS:
            continue
        for out in cell["outputs"]:
            if out["mime"] == "application/vnd.jupyter.stderr":
                found.append(f"{where} shows stderr or an error: {out['text'][:300]!r}")
            elif FAILED.search(out["text"]):
                found.append(f"{where} shows a failure: {out['text'][:300]!r}")
    for fig in report["figures"]:
        where = f"the figure of cell {fig['cell']} ({fig['title'] or fig['annotations'][:1]})"
        drawn = sum(t["segments"] + t["points"] for t in fig["traces"])
        if not fig["svg"] or not drawn:
            found.append(f"{where} has no data drawn in its SVG")
        if "CPU % of vCPUs" in fig["annotations"]:  # the monitor
            if not fig["xticks"] or not all(CLOCK.match(t) for t in fig["xticks"]):
                found.append(f"{where}: time axis labels are not times: {fig['xticks']}")
    return found


@pytest.mark.parametrize("notebook", SHOWN)
def test_run_all_cells_shows_no_error_and_draws_every_figure(lab, notebook):
    report = run_all_cells(lab, notebook)
    found = problems(report, tags(notebook))
    figures = [(f["title"] or f["annotations"][:1], len(f["traces"])) for f in report["figures"]]
    print(f"{notebook}: {len(report['cells'])} cells, figures {figures}, "
          f"screenshot {report['screenshot']}")
    assert not found, "\n".join(found)
    if notebook.endswith("07-monitoring.ipynb"):  # the live monitor and its history
        assert sum("CPU % of vCPUs" in f["annotations"] for f in report["figures"]) >= 2


#: Live figures fed from Python: the design palette with items added in the cell that shows
#: it and in a later cell, and the live topology redrawn after a later cell made a network.
LIVE_CELLS = [
    "%load_ext nbcloud\n%cloud connect qemu:///system",
    "d = %cloud design --stack bt-design\nd.add('server', 'bt-web')\n"
    "d.add('ssd', 'bt-data')\nd.connect('bt-web', 'bt-data')\nd",
    "e = %cloud design --stack bt-design2\ne",
    "e.add('server', 'bt-web2')\ne.add('internet', 'bt-net2')\ne.connect('bt-web2', 'bt-net2')",
    "topo = %cloud topology\ntopo",
    "%cloud network create bt-live --cidr 10.214.77.0/24 --mode isolated",
]


def drop_network(cloud, name: str) -> None:
    """Remove libvirt network `name` if it is there (this test's own, by its prefix)."""
    if name in cloud.provider.network_names():
        cloud.provider.delete_network(name)


def test_live_figures_fed_from_python_are_drawn(lab, cloud):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nb = new_notebook(cells=[new_code_cell(c) for c in LIVE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, lab[2] / "notebooks" / "live-figures.ipynb")
    drop_network(cloud, "bt-live")      # left by a run that was killed mid-test
    try:
        report = run_all_cells(lab, "live-figures.ipynb")
    finally:
        drop_network(cloud, "bt-live")
    found = problems(report, [set() for _ in LIVE_CELLS])
    drawn = {f["cell"]: sum(t["segments"] + t["points"] for t in f["traces"])
             for f in report["figures"]}
    print("figures by cell, with what they drew:", drawn)
    assert not found, "\n".join(found)
    assert set(drawn) >= {1, 2, 4}      # both palettes and the live topology are on show
