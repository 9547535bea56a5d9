"""Widgets, console, screenshots and launch progress on test:///default (issue 5, parts 3-4).

Instances here are marked domains defined directly (the test driver cannot upload a seed);
their "SSH" is a loopback listener that sends a banner, or a loopback port nobody listens
on, so nothing ever leaves the machine.
"""
from __future__ import annotations

import os
import shlex
import socket
import struct
import threading
import time
import zlib

import pytest

from tests.waiting import wait_for

from nbcloud.core.errors import Interrupted
from nbcloud.core.screenshot import Screenshot, png_rows, png_size, ppm_to_png
from nbcloud.providers.libvirt import xml as lx
from nbcloud.ui import commands


@pytest.fixture
def banner_port():
    """A loopback port that greets like an SSH server (for start's wait)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-fake\r\n")
            conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_instance(cloud, name: str, port: int, state: str = "running") -> None:
    meta = {"kind": "instance", "stack": "wg", "image": "tiny", "flavor": "t.nano",
            "networks": "", "volumes": "", "ip": "127.0.0.1", "ssh_port": str(port),
            "key": "default"}
    d = lx.DomainDef(name=name, vcpus=1, memory=128 << 20, domain_type="test",
                     boot=lx.KernelBoot("/k", "/i", ""), metadata=meta)
    uuid = cloud.provider.define(d)
    if state == "running":
        cloud.provider.start(name)
    cloud.inventory.put(cloud.uri, "instance", name, state=state, uuid=uuid, stack="wg",
                        spec={"image": "tiny", "flavor": "t.nano", "networks": []})


@pytest.fixture
def lab(test_cloud, unique, banner_port):
    """Two running instances and a volume row; names are unique per test."""
    a, b = unique("wg-a"), unique("wg-b")
    make_instance(test_cloud, a, banner_port)
    make_instance(test_cloud, b, banner_port)
    test_cloud.inventory.put(test_cloud.uri, "volume", unique("wg-v"), state="available",
                             spec={"size": 1 << 30, "tier": "ssd"})
    test_cloud.ssh_timeout = 3
    yield test_cloud, a, b
    for name in (a, b):
        if test_cloud.provider.exists(name):
            test_cloud.instances.delete(name)


def ls_widget(cloud):
    from nbcloud.ui.widgets.ls import LsWidget
    return LsWidget(cloud)


# ----- ls ----------------------------------------------------------------------------------
def test_ls_rows_show_the_inventory_with_live_state(lab):
    cloud, a, _ = lab
    w = ls_widget(cloud)
    rows = {r["name"]: r for r in w.rows}
    assert rows[a]["kind"] == "instance" and rows[a]["state"] == "running"
    assert "127.0.0.1 t.nano tiny" == rows[a]["detail"]
    assert any(r["kind"] == "volume" and r["detail"] == "1 GiB ssd" for r in w.rows)
    cloud.provider.stop(a, timeout=0)          # behind the widget's back
    w.refresh()
    assert {r["name"]: r["state"] for r in w.rows}[a] == "stopped"


def test_ls_filter_box(lab):
    cloud, a, b = lab
    w = ls_widget(cloud)
    assert [r["name"] for r in w.filter(b)] == [b]
    assert w.count.value.startswith("1 of")
    assert w.row(a).box.layout.display == "none"
    assert {r["kind"] for r in w.filter("volume")} == {"volume"}
    assert w.filter("no-such-thing") == []
    assert len(w.filter("")) == len(w.views)


def test_ls_actions_change_the_domain(lab):
    cloud, a, _ = lab
    w = ls_widget(cloud)
    w.click(a, "stop").result(timeout=30)
    assert cloud.provider.state(a) == "stopped"
    assert w.row(a).row.state == "stopped" and w.row(a).error == ""
    assert w.row(a).buttons["start"].disabled is False
    assert w.row(a).buttons["stop"].disabled is True
    assert w.click(a, "stop") is None          # disabled: the press does nothing
    w.click(a, "start").result(timeout=30)     # waits for the (loopback) banner
    assert cloud.provider.state(a) == "running" and w.row(a).row.state == "running"
    w.click(a, "reboot").result(timeout=30)
    assert w.row(a).error == ""


def test_ls_delete_asks_for_a_second_click(lab):
    cloud, _, b = lab
    w = ls_widget(cloud)
    assert w.click(b, "delete") is None        # armed only
    assert w.row(b).buttons["delete"].description == "confirm?"
    assert cloud.provider.exists(b)
    w.click(b, "delete").result(timeout=30)
    assert not cloud.provider.exists(b)
    assert b not in {r["name"] for r in w.rows}
    assert b not in {r.name for r in cloud.inventory.resources(cloud.uri, "instance")}


def test_ls_errors_are_shown_on_the_row_in_one_line(lab):
    cloud, a, _ = lab
    w = ls_widget(cloud)
    cloud.instances.delete(a)                  # gone behind the widget's back
    w.click(a, "stop").result(timeout=30)
    err = w.row(a).error
    assert err.startswith(f"stop {a} failed: NotFound: instance {a!r} does not exist")
    assert "\n" not in err and "Traceback" not in err
    out = w.row(a).output.outputs
    assert out and out[-1]["name"] == "stderr" and err in out[-1]["text"]
    assert w.row(a).row.state == "missing"
    assert all(btn.disabled for verb, btn in w.row(a).buttons.items()
               if verb in ("start", "stop", "reboot", "console"))


def test_ls_buttons_are_disabled_while_an_action_runs(test_cloud, unique):
    name = unique("wg-slow")
    make_instance(test_cloud, name, closed_port(), state="stopped")
    test_cloud.ssh_timeout = 2                 # start waits for SSH that never answers
    w = ls_widget(test_cloud)
    future = w.click(name, "start")
    view = w.row(name)
    wait_for(lambda: view.running == "start", 30, "the row's action to be under way")
    assert view.running == "start" and view.cells["state"].value == "starting…"
    assert all(b.disabled for b in view.buttons.values())
    future.result(timeout=30)
    assert view.running is None
    assert view.error.startswith(f"start {name} failed: SSHError: SSH on 127.0.0.1:")
    assert not view.buttons["stop"].disabled   # it is running, without SSH
    test_cloud.instances.delete(name)


def test_ls_magic_without_a_widget_frontend_is_a_table(ip, unique):
    cloud = ip.find_magic("cloud").__self__.api
    name = unique("wg-t")
    make_instance(cloud, name, closed_port())
    table = ip.run_line_magic("cloud", f"ls {name}")
    assert [row["name"] for row in table] == [name]
    assert "instance" in str(table) and name in table._repr_html_()
    assert len(ip.run_line_magic("cloud", "ls --kind volume no-such-word")) == 0
    cloud.instances.delete(name)


# ----- the create form ---------------------------------------------------------------------
def test_form_shows_the_magic_line_live(test_cloud, unique):
    from nbcloud.ui.widgets.form import CreateForm
    form = CreateForm(test_cloud)
    assert form.magic == "%cloud instance create NAME"
    assert form.button.disabled and "give the instance a name" in form.line.value
    form.name.value = "Bad Name"
    assert form.button.disabled and "instance name" in form.line.value
    form.name.value = "wg-web"
    form.flavor.value = "m.small"
    form.count.value = 2
    form.wait.value = False
    form.screen.value = True
    assert form.magic == ("%cloud instance create wg-web --flavor m.small --count 2 "
                          "--no-wait --screen")
    assert not form.button.disabled and form.magic in form.line.value
    args = commands.parse(shlex.split(form.magic)[1:])
    assert (args.name, args.flavor, args.count, args.no_wait, args.screen) == \
        ("wg-web", "m.small", "2", True, True)


def test_form_create_runs_exactly_its_line(test_cloud, monkeypatch):
    from nbcloud.ui.widgets.form import CreateForm
    calls = []
    monkeypatch.setattr(test_cloud.instances, "create",
                        lambda name, **kw: calls.append((name, kw)) or f"made {name}")
    form = CreateForm(test_cloud)
    form.name.value = "wg-f"
    form.image.options = ("tiny", "debian")   # images the test driver cannot hold
    form.image.value = "debian"
    form.key.value = "default"
    assert form.create() == "made wg-f"
    (name, kw), = calls
    assert name == "wg-f" and kw["image"] == "debian" and kw["count"] == "1"
    assert kw["wait"] is True and kw["screen"] is False
    texts = "".join(o.get("text", "") for o in form.output.outputs)
    assert "%cloud instance create wg-f --image debian" in texts


def test_form_errors_are_one_line_and_make_nothing(test_cloud, unique):
    from nbcloud.ui.widgets.form import CreateForm
    form = CreateForm(test_cloud)
    name = unique("wg-nf")
    form.name.value = name
    form.wait.value = False
    assert form.create() is None
    assert form.error.startswith("NotFound: image 'tiny' does not exist")
    assert "\n" not in form.error
    assert not test_cloud.provider.exists(name)
    assert not [r for r in test_cloud.inventory.resources(test_cloud.uri) if r.name == name]


# ----- launch: progress and Ctrl-C -----------------------------------------------------------
class _Interrupting:
    """A progress that presses Ctrl-C once every instance has reached `stage` or
    'queued' gave way, as a kernel interrupt would in the caller's thread."""

    def __init__(self, after: float):
        self.after = after
        self.updates, self.finished = [], []

    def update(self, watch):
        from nbcloud.ui.progress import describe_launch
        self.updates.append(describe_launch(watch))
        if time.monotonic() - watch.start > self.after:
            raise KeyboardInterrupt

    def finish(self, watch, message):
        self.finished.append(message)


def test_ctrl_c_in_a_count_create_says_what_is_left(test_cloud, unique, monkeypatch):
    """wg-1 gets as far as running (waiting for SSH), wg-2 never starts, wg-3 fails on its
    own: one is kept and recorded 'starting', the others leave nothing in libvirt or the
    inventory, and the message says which is which."""
    from nbcloud.core.errors import AlreadyExists
    from nbcloud.services.instances import Instance, Instances
    base = unique("wg-c")
    first = f"{base}-1"

    def fake_create_one(self, spec, wait, stack, watch=None, keep=False):
        watch.stage(spec.name, "provisioning")
        if spec.name.endswith("-3"):
            raise AlreadyExists(f"instance {spec.name!r} exists already")
        op = self.ctx.inventory.begin("create", "instance", spec.name)
        if spec.name != first:          # still provisioning when Ctrl-C comes
            while not watch.cancelled():
                time.sleep(0.02)
            self.ctx.inventory.finish(op, "failed", "interrupted, rolled back")
            raise KeyboardInterrupt
        make_instance(test_cloud, spec.name, closed_port(), state="running")
        self.ctx.inventory.set_state("instance", spec.name, "starting")
        watch.stage(spec.name, "booting")
        try:
            Instance(self, spec.name).wait_ready(timeout=60,
                                                       cancelled=watch.cancelled)
        except KeyboardInterrupt:
            self.ctx.inventory.finish(op, "interrupted", "left running")
            raise
    monkeypatch.setattr(Instances, "create_one", fake_create_one)
    monkeypatch.setattr(test_cloud.provider, "accelerator", lambda probe=True: {"accelerator": "test"})
    progress = _Interrupting(after=1.0)
    t0 = time.monotonic()
    with pytest.raises(Interrupted) as caught:
        test_cloud.instances.create(base, count=3, progress=progress)
    assert time.monotonic() - t0 < 10          # the SSH wait gave up at once
    assert str(caught.value) == (f"interrupted: {first} is running but not SSH-ready yet; "
                                 f"{base}-2 was not created; {base}-3 failed (instance "
                                 f"'{base}-3' exists already)")
    assert progress.finished == [str(caught.value)]
    head, rows = progress.updates[-1]
    assert head.startswith("0 of 3 SSH-ready")
    assert rows[0][0] == first and rows[0][1].startswith("booting ")
    inv = {r.name: r.state for r in test_cloud.inventory.resources(test_cloud.uri)}
    assert inv.get(first) == "starting" and f"{base}-2" not in inv
    assert not test_cloud.provider.exists(f"{base}-2")
    test_cloud.instances.delete(first)


def test_interrupted_magic_is_one_line(ip, monkeypatch):
    from IPython.core.error import UsageError

    from nbcloud.services.instances import Instances

    def interrupted(self, *a, **kw):
        raise Interrupted("interrupted: wg-x was not created")
    monkeypatch.setattr(Instances, "create", interrupted)
    with pytest.raises(UsageError, match="^interrupted: wg-x was not created$"):
        ip.run_line_magic("cloud", "instance create wg-x")


def test_launch_text_progress_on_a_terminal(tmp_path):
    import io

    from nbcloud.services.launch import Watch
    from nbcloud.ui.progress import LaunchText

    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    watch = Watch(["wg-1", "wg-2"], wait=True)
    p = LaunchText(out, interval=0)
    watch.stage("wg-1", "booting")
    p.update(watch)
    watch.stage("wg-1", "ready")
    watch.stage("wg-2", "ready")
    p.finish(watch, None)
    text = out.getvalue()
    assert "wg-1 booting" in text and "\rcreate: 2 of 2 SSH-ready" in text
    assert text.endswith("\n")


# ----- console ------------------------------------------------------------------------------
def test_console_follower_follows_until_ready(tmp_path):
    from nbcloud.ui.console import ConsoleFollower
    log = tmp_path / "c.log"
    log.write_text("")
    got = []
    ready = threading.Event()
    f = ConsoleFollower(log, got.append, ready=ready.is_set, running=lambda: True,
                        timeout=30, interval=0.02, check_every=0.05)
    f.start()
    with open(log, "a") as fh:
        for i in range(5):
            fh.write(f"boot line {i}\r\n")
            fh.flush()
            # the next line only once the follower has passed this one on
            wait_for(lambda i=i: f"boot line {i}\n" in "".join(got), 30, f"line {i}")
    ready.set()
    f.join(5)
    assert not f.alive and f.reason == "ssh-ready"
    assert "".join(got) == f.text == "".join(f"boot line {i}\n" for i in range(5))
    assert len(got) >= 2                       # it came in pieces, as it was written


def test_console_follower_reads_on_until_the_log_is_quiet_after_ready(tmp_path):
    """The tiny image prints its host key fingerprints in the background beside the ready
    line: lines that come just after SSH answers still belong to the boot shown."""
    from nbcloud.ui.console import ConsoleFollower
    log = tmp_path / "c.log"
    log.write_text("nbcloud-ready ip=10.77.0.9\n")
    f = ConsoleFollower(log, lambda _t: None, ready=lambda: True, running=lambda: True,
                        timeout=30, interval=0.02, check_every=0.0, settle=0.5)
    f.start()
    wait_for(lambda: "nbcloud-ready" in f.text, 30, "the ready line")
    time.sleep(0.15)
    with open(log, "a") as fh:
        fh.write("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n")
    f.join(10)
    assert f.reason == "ssh-ready" and f.text.endswith("FINGERPRINTS-----\n")
    # a log that never goes quiet (a chatty guest) does not hold it beyond settle_max
    chatty = threading.Event()

    def chatter():
        with open(log, "a") as fh:
            while not chatty.is_set():
                fh.write("tick\n")
                fh.flush()
                time.sleep(0.05)
    writer = threading.Thread(target=chatter)
    writer.start()
    try:
        g = ConsoleFollower(log, lambda _t: None, ready=lambda: True, running=lambda: True,
                            timeout=30, interval=0.02, check_every=0.0, settle=0.5,
                            settle_max=0.4)
        assert g.run() == "ssh-ready" and writer.is_alive()
    finally:
        chatty.set()
        writer.join()


def test_console_follower_restarts_with_a_new_boot_and_times_out(tmp_path):
    from nbcloud.ui.console import ConsoleFollower
    log = tmp_path / "c.log"
    log.write_text("first boot, a long line\n")
    f = ConsoleFollower(log, lambda _t: None, ready=lambda: False, running=lambda: True,
                        timeout=0.6, interval=0.02, check_every=0.05)
    f.start()
    wait_for(lambda: "first boot" in f.text, 30, "the first boot's line")
    log.write_text("new\n")                    # the log starts afresh (append='off')
    f.join(5)
    assert f.reason == "timeout" and f.text.endswith("new\n")


def test_unload_stops_live_consoles(ip, tmp_path):
    from nbcloud.ui import console
    log = tmp_path / "c.log"
    log.write_text("x\n")
    f = console.ConsoleFollower(log, lambda _t: None, ready=lambda: False,
                                running=lambda: True, timeout=300, interval=0.02)
    f.start()
    assert f in console.followers()
    ip.run_line_magic("unload_ext", "nbcloud")
    assert not f.alive and f.reason == "stopped" and console.followers() == []
    ip.run_line_magic("load_ext", "nbcloud")   # the fixture unloads it again


def test_console_of_a_test_domain_is_the_static_log(lab):
    from nbcloud.ui import console
    cloud, a, _ = lab
    shown = console.show(cloud.instances.get(a), widget=True)
    assert isinstance(shown, console.ConsoleLog)
    assert str(shown) == "(no console output yet)"


def test_live_console_widget(tmp_path):
    from nbcloud.ui import console
    log = tmp_path / "c.log"
    log.write_text("SeaBIOS\n")
    ready = threading.Event()
    f = console.ConsoleFollower(log, lambda _t: None, ready=ready.is_set,
                                running=lambda: True, timeout=30, interval=0.02,
                                check_every=0.05)
    view = console.LiveConsole("wg-l", f)
    with open(log, "a") as fh:
        fh.write("nbcloud-ready ip=10.77.0.9\n")
    wait_for(lambda: "nbcloud-ready" in f.text, 30, "the ready line to be read")
    ready.set()
    f.join(5)
    assert "".join(o["text"] for o in view.output.outputs) == \
        "SeaBIOS\nnbcloud-ready ip=10.77.0.9\n"
    assert "it is SSH-ready" in view.status.value and "ended (ssh-ready)" in repr(view)


# ----- screenshots --------------------------------------------------------------------------
def test_ppm_to_png_round_trip():
    w, h = 9, 4
    pixels = bytes((x * 29 + y * 71 + c * 13) % 256 for y in range(h) for x in range(w)
                   for c in range(3))
    ppm = b"P6\n# made by a test\n%d %d\n255\n" % (w, h) + pixels
    png = ppm_to_png(ppm)
    assert png_size(png) == (w, h)
    width, height, rows = png_rows(png)
    assert (width, height) == (w, h) and b"".join(rows) == pixels
    # every chunk's CRC is right (a strict decoder checks them)
    i = 8
    while i < len(png):
        length, kind = struct.unpack(">I4s", png[i:i + 8])
        body = png[i + 8:i + 8 + length]
        assert struct.unpack(">I", png[i + 8 + length:i + 12 + length])[0] == \
            zlib.crc32(kind + body)
        i += 12 + length
    with pytest.raises(ValueError, match="not a binary PPM"):
        ppm_to_png(b"P3\n1 1\n255\n0 0 0\n")
    with pytest.raises(ValueError, match="truncated"):
        ppm_to_png(b"P6\n4 4\n255\n" + b"\0" * 10)


def test_screenshot_of_a_test_domain(lab, tmp_path, monkeypatch):
    cloud, a, _ = lab
    shot = cloud.instances.get(a).screenshot()   # the test driver answers a PNG
    assert isinstance(shot, Screenshot) and shot._repr_png_().startswith(b"\x89PNG")
    w, h = shot.size
    assert w > 0 and h > 0 and f"{w}x{h} PNG" in repr(shot)
    assert "data:image/png;base64," in shot._repr_html_()
    # an older QEMU answers PPM: converted
    ppm = b"P6\n2 1\n255\n" + bytes([255, 0, 0, 0, 0, 255])
    monkeypatch.setattr(cloud.provider, "screenshot", lambda name: ("image/x-portable-pixmap",
                                                                   ppm))
    shot = cloud.instances.get(a).screenshot()
    assert shot.size == (2, 1) and shot.colours() == 2
    shot.save(tmp_path / "s.png")
    assert os.path.getsize(tmp_path / "s.png") == len(shot.png)


def test_screenshot_of_a_stopped_instance_says_why(lab):
    from nbcloud.core.errors import CloudError
    cloud, a, _ = lab
    cloud.provider.stop(a, timeout=0)
    with pytest.raises(CloudError, match="is not running: it has no screen"):
        cloud.instances.get(a).screenshot()


def test_video_device_only_with_screen():
    d = lx.DomainDef(name="wg-x", vcpus=1, memory=128 << 20)
    assert "<video>" not in lx.domain_xml(d)
    xml = lx.domain_xml(lx.DomainDef(name="wg-x", vcpus=1, memory=128 << 20, video=True))
    assert "<video><model type=\"vga\" /></video>" in xml
    args = commands.parse(["instance", "create", "wg-x", "--screen"])
    assert args.screen is True


def test_console_on_a_terminal_prints_the_boot_as_it_comes(tmp_path, monkeypatch, capsys):
    from nbcloud.ui import console
    log = tmp_path / "c.log"
    log.write_text("Linux version 6.1\nnbcloud-ready ip=10.77.0.9\n")
    started = time.monotonic()
    monkeypatch.setattr(console, "follower_for", lambda inst, sink, timeout: (
        console.ConsoleFollower(log, sink, ready=lambda: time.monotonic() - started > 0.3,
                                running=lambda: True, timeout=timeout, interval=0.02,
                                check_every=0.05)))

    class Inst:
        name = "wg-term"
    shown = console.show(Inst(), widget=False, timeout=30)
    assert capsys.readouterr().out == "Linux version 6.1\nnbcloud-ready ip=10.77.0.9\n"
    assert str(shown).strip() == "(console of wg-term no longer followed: ssh-ready)"
