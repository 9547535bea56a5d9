"""nbcloud inside JupyterLab, as a newcomer gets it: a fresh clone of this repository is
`pip install`ed into a fresh virtualenv (the wheel's build hook builds the front ends from
npm), and that JupyterLab, started here on a loopback port, is driven by Debian's headless
Chromium (npm's playwright-core, tests/lab/drive.mjs) on the real daemon:

- `jupyter labextension list` shows the Cloud panel enabled, `jupyter server extension list`
  its server part; its endpoints refuse unauthenticated requests and POSTs without XSRF;
- the Cloud panel appears with no extra step, lists an instance created from a notebook
  within 2 s of the cell that made it, and its stop button stops it (libvirt: shut off);
  clicking an instance inserts `%cloud instance show NAME` into the notebook;
- a terminal widget receives typed `hostname` and shows the guest's name on a line of its
  own; the guest's `stty size` is the widget's size; Ctrl-C pressed there stops a command; the serial terminal does the same on a guest whose security group drops all
  ingress; the panel's terminal button opens a JupyterLab terminal tab on the instance.

The clone is of the committed HEAD: uncommitted changes are not in it.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import libvirt
import pytest

from tests.jupyter_server import stop, wait_answering

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PREFIX = "lx-lab"
FIRST, SERIAL, CLOSED = f"{PREFIX}-1", f"{PREFIX}-2", f"{PREFIX}-closed"
#: the tiny image to boot (as in tests/integration/test_terminals.py)
IMAGE = os.environ.get("NBCLOUD_TEST_TINY", "tiny")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        reason = f"{program} is not installed (scripts/setup.sh installs it)"
        if os.environ.get("NBCLOUD_CI") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A fresh clone pip-installed into a fresh virtualenv (scripts/fresh-install.sh): that
    venv's bin folder. `make test` makes it outside the test namespace (which has no route
    to the package registries) and names it in NBCLOUD_FRESH_INSTALL; without it, it is
    made here."""
    dest = os.environ.get("NBCLOUD_FRESH_INSTALL")
    if not dest:
        _need("npm")
        dest = str(tmp_path_factory.mktemp("fresh"))
        done = subprocess.run(["bash", str(ROOT / "scripts" / "fresh-install.sh"), dest],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        print(done.stdout.strip())
    bin_dir = Path(dest) / "venv" / "bin"
    # it is an installed wheel, not this checkout's editable install
    # (run away from this checkout: `python -c` and `-m` put the current folder first)
    where = subprocess.run([str(bin_dir / "python"), "-c", "import nbcloud; print(nbcloud.__file__)"],
                           capture_output=True, text=True, check=True, cwd=dest).stdout.strip()
    assert where.startswith(str(Path(dest) / "venv")), where
    return bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(fresh, tmp_path_factory):
    """The fresh install's JupyterLab: (base URL, token, its folder, its NBCLOUD_HOME)."""
    _need("chromium")
    if not (HERE.parent / "browser" / "node_modules" / "playwright-core").is_dir():
        _need("playwright-core in tests/browser/node_modules (scripts/setup.sh: npm ci)")
    root = tmp_path_factory.mktemp("lab")
    home = root / "nbcloud-home"
    home.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, NBCLOUD_HOME=str(home), JUPYTER_CONFIG_DIR=str(root / "config"),
               JUPYTER_DATA_DIR=str(root / "data"), JUPYTER_RUNTIME_DIR=str(root / "rt"),
               IPYTHONDIR=str(root / "ipython"), PATH=f"{fresh}:{os.environ['PATH']}")
    env.pop("NBCLOUD_URI", None)
    # JupyterLab's terminals draw on a canvas; in screen-reader mode xterm.js also keeps
    # their text in the page (drive.mjs reads it there)
    settings = root / "settings" / "@jupyterlab" / "terminal-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text('{"screenReaderMode": true}')
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(
        [str(fresh / "python"), "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         "--allow-root", f"--LabApp.user_settings_dir={root / 'settings'}",
         f"--LabApp.workspaces_dir={root / 'workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    base = f"http://127.0.0.1:{port}"
    wait_answering(proc, base, token, root / 'lab.log')
    yield base, token, root, home, env
    stop(proc)
    log.close()


def test_extensions_are_listed_enabled(fresh, lab):
    env = lab[4]
    labext = subprocess.run([str(fresh / "jupyter"), "labextension", "list"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=lab[2])
    lines = ANSI.sub("", labext.stdout + labext.stderr)
    assert re.search(r"nbcloud-jupyterlab v\S+ enabled OK \(python, nbcloud\)", lines), lines
    server = subprocess.run([str(fresh / "jupyter"), "server", "extension", "list"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=lab[2])
    lines = ANSI.sub("", server.stdout + server.stderr)
    assert re.search(r"nbcloud\.ui\.server enabled", lines), lines
    assert re.search(r"nbcloud\.ui\.server\s+OK", lines), lines


def _status(request, opener=urllib.request.urlopen) -> tuple[int, str]:
    try:
        with opener(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_endpoints_refuse_unauthenticated_and_unchecked_requests(lab):
    base, token = lab[0], lab[1]
    for method, path in [("GET", "state"), ("GET", "terminal?name=x"),
                         ("POST", f"instances/{FIRST}/stop"),
                         ("POST", f"instances/{FIRST}/start")]:
        req = urllib.request.Request(f"{base}/nbcloud/{path}", method=method)
        code, _ = _status(req)
        assert code == 403, f"{method} {path} without credentials answered {code}"
        bad = urllib.request.Request(f"{base}/nbcloud/{path}", method=method,
                                     headers={"Authorization": "token not-the-token"})
        assert _status(bad)[0] == 403, f"{method} {path} with a wrong token"
    # logged in through the browser's cookie, a POST without the XSRF token is refused...
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)).open
    assert _status(urllib.request.Request(f"{base}/lab?token={token}"), opener)[0] == 200
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    code, body = _status(urllib.request.Request(f"{base}/nbcloud/instances/{PREFIX}-none/stop",
                                                method="POST"), opener)
    assert code == 403 and "_xsrf" in body, (code, body)
    # ...and with it the request reaches nbcloud, which checks the name
    with_xsrf = urllib.request.Request(f"{base}/nbcloud/instances/{PREFIX}-none/stop",
                                       method="POST", headers={"X-XSRFToken": xsrf})
    code, body = _status(with_xsrf, opener)
    assert code == 400 and f"{PREFIX}-none" in json.loads(body)["error"], (code, body)
    hostile = urllib.request.Request(f"{base}/nbcloud/terminal?name=a%3Brm%20-rf%20~",
                                     headers={"Authorization": f"token {token}"})
    code, body = _status(hostile)
    assert code == 400 and "instance name" in json.loads(body)["error"], (code, body)
    ok = urllib.request.Request(f"{base}/nbcloud/state",
                                headers={"Authorization": f"token {token}"})
    code, body = _status(ok)
    assert code == 200 and json.loads(body)["uri"].startswith("qemu:///"), (code, body)


CELLS = [
    "%load_ext nbcloud",
    f"%cloud instance create {FIRST} --image {IMAGE}",
    f"t = %cloud instance terminal {FIRST}\nt",
    f"%cloud secgroup create {CLOSED}\n%cloud instance create {SERIAL} --image {IMAGE}\n"
    f"%cloud secgroup attach {CLOSED} {SERIAL}",
    f"s = %cloud instance terminal {SERIAL} --serial\ns",
]


def _cleanup(lab) -> None:
    """Whatever the notebook made goes, through the notebook's own inventory."""
    from nbcloud.api import Cloud
    from nbcloud.inventory import Inventory
    cloud = Cloud(inventory=Inventory(lab[3] / "inventory.sqlite"))
    try:
        for name in (FIRST, SERIAL):
            if cloud.provider.exists(name):
                cloud.instances.delete(name)
        if CLOSED in {r.name for r in cloud.services.inventory.all() if r.kind == "secgroup"}:
            cloud.secgroups.delete(CLOSED)
    finally:
        cloud.close()


def _drive(lab, notebook: str, steps: list[dict], shot: str) -> dict:
    base, token, root = lab[0], lab[1], lab[2]
    job = {"url": f"{base}/lab/tree/{notebook}?reset&token={token}", "steps": steps,
           "screenshot": str(root / shot), "chromium": shutil.which("chromium")}
    done = subprocess.run([_need("node"), str(HERE / "drive.mjs"), json.dumps(job)],
                          capture_output=True, text=True, cwd=HERE, timeout=900)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    report["screenshot"] = str(root / shot)
    return report


def test_panel_and_terminals_in_a_real_jupyterlab(lab):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, lab[2] / "cloud.ipynb")
    steps = [
        {"panel": True},
        {"run": 0},
        {"run": 1, "timeout": 240},
        {"row": FIRST, "timeout": 30},
        {"run": 2},
        {"type": "hostname\r", "cell": 2},
        {"line": FIRST, "cell": 2},
        {"size": True, "cell": 2},              # the widget's size reached the guest's pty
        {"type": "stty size\r", "cell": 2},
        {"type": "sleep 300; echo not-interrupted\r", "cell": 2},
        {"keys": ["Control+C"], "cell": 2},     # Ctrl-C from the keyboard stops it
        {"type": "echo typed-$((40+2))\r", "cell": 2},
        {"line": "typed-42", "cell": 2, "timeout": 20},
        {"run": 3, "timeout": 240},
        {"run": 4},
        {"type": "\r", "cell": 4},
        {"type": "hostname\r", "cell": 4},
        {"line": SERIAL, "cell": 4},
        {"show": FIRST},
        {"press": "terminal", "name": FIRST},
        {"tab": FIRST, "after": "Ctrl-] leaves", "type": "hostname\r", "timeout": 60},
        {"press": "stop", "name": FIRST},
        {"row": FIRST, "state": "stopped", "timeout": 120},
    ]
    conn = libvirt.open("qemu:///system")
    try:
        report = _drive(lab, "cloud.ipynb", steps, "panel.png")
        at = {json.dumps(s["step"], sort_keys=True): s for s in report["steps"]}
        print("steps:", [(s["step"], s["ok"], s.get("error", "")[:200]) for s in report["steps"]],
              "screenshot", report["screenshot"], "console", report["console"][:5])
        failed = [s for s in report["steps"] if not s["ok"]]
        assert not report.get("error") and not failed and len(report["steps"]) == len(steps), \
            (report.get("error"), failed[:1])
        size = at[json.dumps({"size": True, "cell": 2}, sort_keys=True)]["detail"]
        screen = at[json.dumps({"line": "typed-42", "cell": 2, "timeout": 20},
                               sort_keys=True)]["detail"]
        lines = [line.strip() for line in screen.split("\n")]
        assert re.fullmatch(r"\d+ \d+", size or "") and size in lines, (size, screen)
        assert "not-interrupted" not in lines, screen
        created = at[json.dumps({"run": 1, "timeout": 240}, sort_keys=True)]["t"]
        seen = report["seen"][FIRST]
        print(f"the panel listed {FIRST} {(seen - created) / 1000:+.2f} s after its cell ended")
        assert seen - created <= 2000
        # libvirt: the stop button stopped it; the serial guest has its closed group's filter
        state = conn.lookupByName(FIRST).state()[0]
        assert state == libvirt.VIR_DOMAIN_SHUTOFF, state
        assert "<filterref" in conn.lookupByName(SERIAL).XMLDesc(0)
    finally:
        conn.close()
        _cleanup(lab)
