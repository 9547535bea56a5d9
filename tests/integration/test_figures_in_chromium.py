"""The picture test: a notebook using the monitor, the topology and the design palette is
executed (nbclient, a real kernel, a real guest), exported to HTML with plotly.js inside
the page, rendered by headless Chromium, and the rendered page must hold the plots:
an `svg.main-svg` per figure, with trace paths that have data. A PNG screenshot is kept
in the test's tmp dir.

Live widgets (FigureWidget) need a widget manager that an offline HTML export cannot
load, so the notebook shows each live figure's static copy too (`snapshot()`,
`go.Figure(topo.figure)`), as a report made from a notebook would.
"""
from __future__ import annotations

import re
import shutil
import subprocess

from tests.needs import program

NAME = "mo-pic"
CHROMIUM = shutil.which("chromium")
# everything a page could fetch is refused: only the file itself is read
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",
                  "--no-first-run", "--hide-scrollbars"]

CELLS = [
    # plotly.js inside the page: the export is read offline ("notebook_connected" would
    # load it from a CDN)
    "import plotly.io as pio, plotly.graph_objects as go\n"
    "pio.renderers.default = 'notebook'",
    "%load_ext nbcloud\n%config CloudMagics.inventory = {inventory!r}\n"
    "%cloud connect qemu:///system",
    "%cloud network create mo-pic-net --cidr 10.152.0.0/24 --mode isolated\n"
    "web = %cloud instance create {name} --flavor c.nano --network mo-pic-net\n"
    "web.ssh('(while :; do :; done) >/dev/null 2>&1 &')",
    "live = %cloud monitor {name} --interval 0.5\nlive",
    "import time\ntime.sleep(3)\n"
    "web.ssh('dd if=/dev/zero of=/dev/vda bs=64k count=160 conv=fsync 2>/dev/null')\n"
    "time.sleep(3)\nlive.snapshot()",
    "%cloud monitor {name} --since 1m",
    "topo = %cloud topology\ngo.Figure(topo.figure)",
    "d = %cloud design --stack mo-pic-design\n"
    "d.add('server', 'mo-d-web')\nd.add('ssd', 'mo-d-data')\n"
    "d.connect('mo-d-web', 'mo-d-data')\ngo.Figure(d.figure)",
    "print(d.yaml())\n%cloud instance delete {name}\n%cloud network delete mo-pic-net",
]


def run_notebook(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook
    cells = [new_code_cell(c.format(name=NAME, inventory=str(tmp_path / "inv.sqlite")))
             for c in CELLS]
    nb = new_notebook(cells=cells)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "picture.ipynb")
    return nb


def export_html(nb, path) -> None:
    from nbconvert import HTMLExporter
    # the widgets' saved state (each FigureWidget's carries a copy of plotly.js) is of no
    # use without a widget manager; without it the page is a quarter of the size
    nb.metadata.pop("widgets", None)
    body, _ = HTMLExporter(mathjax_url="", require_js_url="", jquery_url="",
                           widget_renderer_url="").from_notebook_node(nb)
    # the template's own CDN scripts (MathJax, widget manager) cannot load here
    body = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', "", body)
    path.write_text(body)


def chromium(*args, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *args], capture_output=True,
                          check=False, timeout=timeout, text=True)


def plots(dom: str) -> list:
    """Each rendered plotly plot: (title, [d of every trace line], number of markers)."""
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(dom, "html.parser")
    out = []
    for div in soup.select("div.js-plotly-plot"):
        assert div.select("svg.main-svg"), "a plot without its SVG"
        title = div.select_one("text.gtitle")
        lines = [p.get("d", "") for p in div.select("g.trace path.js-line")]
        points = div.select("g.trace path.point")
        out.append((title.get_text() if title else "", lines, len(points)))
    return out


def test_notebook_renders_monitor_topology_and_design(cloud, tmp_path):
    program("chromium", "Debian package chromium (scripts/setup.sh installs it)")
    def clean():
        if cloud.provider.exists(NAME):
            cloud.instances.delete(NAME)
        if "mo-pic-net" in [n.name for n in cloud.networks.list()]:
            cloud.networks.delete("mo-pic-net")
    clean()
    try:
        nb = run_notebook(tmp_path)
    finally:
        clean()
    html = tmp_path / "picture.html"
    export_html(nb, html)
    assert "https://cdn.plot.ly" not in re.sub(r"<script>.*?</script>", "", html.read_text(),
                                               flags=re.DOTALL)

    # one run: the DOM after the page's scripts ran, and the screenshot
    png = tmp_path / "picture.png"
    dom = chromium("--virtual-time-budget=15000", "--window-size=1280,4400",
                   f"--screenshot={png}", "--dump-dom", f"file://{html}")
    assert dom.returncode == 0, dom.stderr[-500:]
    shown = {title.split(":")[0].split(" at ")[0]: (lines, points)
             for title, lines, points in plots(dom.stdout)}
    print({t: ([d.count("L") for d in v[0]], v[1]) for t, v in shown.items()})

    # the live view's copy and the history from SQLite: six series in four panels, all
    # drawn (plotly merges the points of a flat line, so a flat one has one segment)
    live = next(v for t, v in shown.items() if t.startswith("live"))
    history = next(v for t, v in shown.items() if t.startswith("last 1m"))
    for lines, _points in (live, history):
        assert sum(1 for d in lines if "L" in d) == 6
    # the topology and the design: nodes as markers, connections as lines
    topo = next(v for t, v in shown.items() if t.startswith("topology"))
    assert topo[1] >= 2 and any(topo[0])          # mo-pic and its network, an edge
    design = next(v for t, v in shown.items() if t.startswith("design"))
    assert design[1] >= 2 and any(design[0])

    # the CPU line (first panel, range fixed at 0..105 %) rises with the burner, or, on an
    # idle host where the burner gets a whole core for the entire window, runs flat along
    # the top of the panel (SVG y grows downwards: y near 0 is ~100 %); the disk write
    # line (third panel, second trace) rises with the dd
    def ys(d: str) -> list[float]:
        return [float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", d)]

    def height(d: str) -> float:
        return max(ys(d)) - min(ys(d))
    for lines, _points in (live, history):
        assert height(lines[0]) > 5 or max(ys(lines[0])) < 10, \
            "the CPU line neither rises nor runs near 100 %: the burner does not show"
        assert height(lines[3]) > 5, "a flat disk write line: the dd does not show"

    assert png.stat().st_size > 20_000
    print(f"screenshot: {png}")
