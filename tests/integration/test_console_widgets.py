"""Console, screenshot, the ls widget and Ctrl-C in a create, on the real daemon with real
TCG guests (issue 5, parts 3-4). At most two tiny guests run at once."""
from __future__ import annotations

import os
import signal
import threading

import libvirt
import pytest

from nbcloud.core.errors import CloudError, Interrupted
from nbcloud.ui import console
from nbcloud.ui.widgets.ls import LsWidget

NAME = "wg-con"


def _gone(cloud, *names):
    for name in names:
        if cloud.provider.exists(name):
            cloud.instances.delete(name)


@pytest.fixture(scope="module")
def booting(cloud):
    """A tiny instance with a screen, created without waiting: it is booting now."""
    _gone(cloud, NAME)
    inst = cloud.instances.create(NAME, flavor="m.nano", wait=False, screen=True)
    yield inst
    _gone(cloud, NAME)


def test_console_follows_the_boot_live(cloud, booting):
    shown = console.show(booting, widget=True, timeout=90)
    assert isinstance(shown, console.LiveConsole), "a booting instance is followed"
    shown.follower.join(100)
    assert shown.follower.reason == "ssh-ready"
    text = "".join(o["text"] for o in shown.output.outputs)
    # the guest's own boot lines, as the tiny image's init prints them
    assert f"nbcloud-ready ip={booting.ip}" in text
    assert "BEGIN SSH HOST KEY FINGERPRINTS" in text
    assert "SSH-ready" in shown.status.value
    # once it answers SSH the console is the log as it is, with the same lines
    static = console.show(booting, widget=True)
    assert isinstance(static, console.ConsoleLog)
    assert f"nbcloud-ready ip={booting.ip}" in str(static)
    assert booting.ssh("hostname").strip() == NAME


def test_screenshot_is_a_png_of_the_vga_screen(cloud, booting):
    xml = cloud.provider.domain_xml_desc(NAME)
    assert "<model type='vga'" in xml
    shot = booting.screenshot()
    assert shot.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.size == (720, 400)            # VGA text mode, 80x25 of 9x16 cells
    assert shot.colours() >= 2                # text on the screen, not a blank
    again = cloud.instances.get(NAME).screenshot()
    assert again.size == shot.size


def test_ls_widget_actions_on_a_real_instance(cloud, booting):
    w = LsWidget(cloud)
    assert [r["name"] for r in w.filter(NAME)] == [NAME]
    assert w.rows[0]["state"] == "running" and booting.ip in w.rows[0]["detail"]
    w.click(NAME, "stop").result(timeout=60)
    assert w.row(NAME).error == ""
    dom = cloud.provider.conn.lookupByName(NAME)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert w.rows[0]["state"] == "stopped"
    w.click(NAME, "start").result(timeout=120)     # returns once SSH answers
    assert w.row(NAME).error == "" and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert booting.ssh("echo up").strip() == "up"
    w.click(NAME, "console").result(timeout=30)
    shown = w.row(NAME).output.outputs[-1]["data"]["text/plain"]
    assert "nbcloud-ready" in shown
    assert w.click(NAME, "delete") is None          # armed; the second click deletes
    w.click(NAME, "delete").result(timeout=60)
    assert not cloud.provider.exists(NAME)
    assert NAME not in {r.name for r in cloud.inventory.resources(cloud.uri, "instance")}
    assert w.filter(NAME) == []


class _SigintWhenBooting:
    """A progress that watches the stages and, from another thread, sends this process
    SIGINT (what a kernel interrupt is) once an instance is booting."""

    def __init__(self):
        self.booting = threading.Event()
        self.finished = []
        self.last = None
        threading.Thread(target=self._press, daemon=True).start()

    def _press(self):
        if self.booting.wait(120):
            os.kill(os.getpid(), signal.SIGINT)

    def update(self, watch):
        self.last = watch.stages()
        if any(stage == "booting" for stage, _ in self.last.values()):
            self.booting.set()

    def finish(self, watch, message):
        self.finished.append(message)


def test_ctrl_c_during_a_count_create(cloud):
    names = ["wg-int-1", "wg-int-2"]
    _gone(cloud, *names)
    # Ctrl-C as a kernel has it (KeyboardInterrupt), even where the test command was
    # started in the background, whose shell leaves SIGINT ignored
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    progress = _SigintWhenBooting()
    try:
        with pytest.raises(Interrupted) as caught:
            # cold boots: a warm clone is SSH-ready within a second of "booting", before
            # the keypress could land
            cloud.instances.create("wg-int", count=2, flavor="m.nano", progress=progress,
                                   boot="cold")
        message = str(caught.value)
        assert message.startswith("interrupted: ") and progress.finished == [message]
        inventory = {r.name: r.state for r in cloud.inventory.resources(cloud.uri,
                                                                        "instance")}
        running = 0
        for name in names:
            if f"{name} is running but not SSH-ready yet" in message:
                running += 1
                assert cloud.provider.state(name) == "running"
                assert inventory[name] == "starting"
            elif f"{name} was not created" in message:
                assert not cloud.provider.exists(name) and name not in inventory
                assert not [v for v in cloud.provider.volumes("nbcloud")
                            if v.startswith(f"{name}.")]
            else:
                assert f"{name} is SSH-ready" in message and inventory[name] == "running"
        assert running >= 1, message           # the one that was booting was kept
        kept = next(n for n in names if cloud.provider.exists(n))
        with pytest.raises(CloudError, match="has no screen.*--screen"):
            cloud.instances.get(kept).screenshot()
    finally:
        signal.signal(signal.SIGINT, handler)
        _gone(cloud, *names)
    assert not any(cloud.provider.exists(n) for n in names)
