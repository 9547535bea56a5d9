"""Interactive terminals on a real guest: the shell over SSH (a pty: resize, Ctrl-C, Ctrl-D,
UTF-8) and the serial console through a libvirt stream; closing one (or the kernel that
holds its widget) leaves no thread, no SSH session in the guest and no libvirt stream
(a console still held could not be opened again without force); `nbcloud terminal` in a
pty, as a JupyterLab terminal tab runs it."""
from __future__ import annotations

import os
import pty
import select
import sys
import threading
import time

import pytest

from nbcloud.core.errors import CloudError
from tests.waiting import wait_for

NAME = "lx-term"
#: the tiny image to boot: on a daemon shared by several checkouts, a name of one's own
#: built from this checkout (the shared "tiny" may be another checkout's build)
IMAGE = os.environ.get("NBCLOUD_TEST_TINY", "tiny")


@pytest.fixture(scope="module")
def guest(cloud):
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)
    inst = cloud.instances.create(NAME, image=IMAGE, flavor="m.nano", network="nbcloud")
    yield inst
    if cloud.provider.exists(NAME):
        cloud.instances.delete(NAME)


class Screen:
    """What a terminal printed, readable while it prints."""

    def __init__(self):
        self.data = bytearray()
        self.lock = threading.Lock()

    def __call__(self, chunk: bytes) -> None:
        with self.lock:
            self.data += chunk

    def text(self) -> str:
        with self.lock:
            return self.data.decode(errors="replace")

    def lines(self) -> list[str]:
        return [line.strip() for line in self.text().replace("\r", "").split("\n")]

    def wait_line(self, line: str, timeout: float = 30) -> None:
        wait_for(lambda: line in self.lines(), timeout, f"a line {line!r} in {self.text()[-300:]!r}")


def sessions(inst) -> int:
    """dropbear processes in the guest besides the listener and this command's own."""
    return int(inst.ssh("pidof dropbear | wc -w").strip()) - 2


def terminal_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith("nbcloud-terminal") or type(t).__name__ == "Transport"]


def test_ssh_terminal_pty_resize_ctrl_c_utf8_ctrl_d(guest):
    before, threads_before = sessions(guest), terminal_threads()
    screen = Screen()
    ended = []
    term = guest.terminal(cols=90, rows=20).start(screen, ended.append)
    term.write("hostname\r")
    screen.wait_line(NAME)
    assert sessions(guest) == before + 1
    term.write("stty size\r")
    screen.wait_line("20 90")
    term.resize(120, 33)
    term.write("stty size\r")
    screen.wait_line("33 120")
    term.write("echo h\u00e9llo-\u2713\r")               # UTF-8 both ways
    screen.wait_line("h\u00e9llo-\u2713")
    term.write("sleep 300; echo not-interrupted\r")
    time.sleep(1)
    term.write("\x03")                                    # Ctrl-C reaches the guest's shell
    term.write("echo after-$((40+2))\r")
    screen.wait_line("after-42", timeout=15)
    assert "not-interrupted" not in screen.lines()
    term.write("\x04")                                    # Ctrl-D: the shell exits
    wait_for(lambda: term.closed, 15, "the session to end after Ctrl-D")
    assert ended == ["the guest ended the session"]
    wait_for(lambda: terminal_threads() == threads_before, 10,
             f"no terminal thread left ({terminal_threads()})")
    wait_for(lambda: sessions(guest) == before, 15, "the guest's SSH session to end")


def test_closing_an_ssh_terminal_leaves_nothing(guest):
    before, threads_before = sessions(guest), terminal_threads()
    screen = Screen()
    term = guest.terminal().start(screen)
    term.write("sleep 600\r")                             # busy: the guest would not end it
    wait_for(lambda: sessions(guest) == before + 1, 15, "the session in the guest")
    channel = term._backend.channel
    term.close()
    assert channel.closed and not term.running
    assert terminal_threads() == threads_before
    wait_for(lambda: sessions(guest) == before, 15, "the guest's SSH session to end")
    with pytest.raises(CloudError, match="closed"):
        term.write("echo too late\r")


def test_serial_console_and_its_stream_released(cloud, guest):
    threads_before = terminal_threads()
    screen = Screen()
    term = guest.terminal(serial=True).start(screen)
    term.write("\rhostname\r")
    screen.wait_line(NAME)
    # one session at a time: libvirt refuses a second without force (which nbcloud never uses)
    with pytest.raises(CloudError, match="in use by another session"):
        cloud.provider.open_serial(NAME)
    term.write("sleep 300; echo not-interrupted\r")
    time.sleep(1)
    # the guest is silent now, and the cloud's own connection still answers at once (the
    # console's blocking reads hold a libvirt connection of their own)
    answered = []
    asking = threading.Thread(target=lambda: answered.append(guest.state), daemon=True)
    asking.start()
    asking.join(10)
    assert answered == ["running"], "a libvirt call waited for the silent serial console"
    term.write("\x03")                                    # the serial shell has a ctty
    term.write("echo serial-$((40+2))\r")
    screen.wait_line("serial-42", timeout=15)
    term.close()
    assert not term.running and terminal_threads() == threads_before
    # the stream was closed in libvirt: a new session opens without force
    again = cloud.provider.open_serial(NAME)
    again.close()


def _execute(kc, code: str, timeout: float = 60):
    msg_id = kc.execute(code)
    deadline = time.monotonic() + timeout
    out, errors = [], []
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Exception:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(msg["content"]["evalue"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            assert not errors, errors
            return "".join(out)
    pytest.fail(f"cell did not finish within {timeout} s: {code[:60]!r}")


def test_widgets_end_their_sessions_on_close_and_with_the_kernel(cloud, guest):
    """The widgets in a real kernel: close() ends the session and its thread; the
    kernel's exit ends the others (the guest's SSH session, the libvirt stream)."""
    from jupyter_client.manager import start_new_kernel
    before = sessions(guest)
    km, kc = start_new_kernel(kernel_name="python3",
                              env={**os.environ, "NBCLOUD_URI": cloud.uri})
    try:
        _execute(kc, "%load_ext nbcloud\nimport json, threading")
        out = _execute(kc, f"w = %cloud instance terminal {NAME}\n"
                           "print(type(w).__name__, w.status, w.terminal.kind)")
        assert out.split() == ["TerminalWidget", "open", "ssh"]
        wait_for(lambda: sessions(guest) == before + 1, 15, "the widget's SSH session")
        out = _execute(kc, "w.close()\nprint(json.dumps([t.name for t in threading.enumerate()"
                           " if t.name.startswith('nbcloud-terminal')]), w.terminal.closed)")
        assert out.split() == ["[]", "True"]
        wait_for(lambda: sessions(guest) == before, 15, "the SSH session to end on close")
        # a shell and the serial console left open when the kernel goes
        out = _execute(kc, f"a = %cloud instance terminal {NAME}\n"
                           f"b = %cloud instance terminal {NAME} --serial\n"
                           "print(a.status, b.status)")
        assert out.startswith("open open")
        wait_for(lambda: sessions(guest) == before + 1, 15, "the second widget's session")
        with pytest.raises(CloudError, match="in use"):
            cloud.provider.open_serial(NAME)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    wait_for(lambda: sessions(guest) == before, 15, "the SSH session to end with the kernel")
    again = cloud.provider.open_serial(NAME)   # the kernel's stream is gone from libvirt
    again.close()


def test_nbcloud_terminal_in_a_pty(cloud, guest):
    """What a JupyterLab terminal tab runs: `nbcloud terminal NAME [--serial]`."""
    for extra in ([], ["--serial"]):
        pid, fd = pty.fork()
        if pid == 0:   # the child: the command line, with this test's NBCLOUD_HOME (keys)
            os.execv(sys.executable, [sys.executable, "-m", "nbcloud", "--uri", cloud.uri,
                                      "terminal", NAME, *extra])
        seen = bytearray()

        def read_until(text: str, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while text not in seen.decode(errors="replace") and time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    try:
                        seen.extend(os.read(fd, 4096))
                    except OSError:
                        break
            assert text in seen.decode(errors="replace"), seen.decode(errors="replace")

        read_until("Ctrl-] leaves")
        os.write(fd, b"\r")
        read_until("# ")   # the shell's prompt: what is typed before it may be lost
        os.write(fd, b"hostname\r")
        read_until(f"\r\n{NAME}\r\n")
        os.write(fd, b"\x1d")                    # Ctrl-] leaves
        read_until("closed: left")
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 0
