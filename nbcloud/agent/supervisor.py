"""The agent's supervisor: a small process that starts the agent and starts it again when
it dies (no systemd here), until `host down` stops it.

`spawn` starts the supervisor detached (it forks away from the caller, so a closing
terminal or a finished `host up` does not take it along), inside the daemon's network
namespace when asked: the agent must see the guests, bridges and nft tables the daemon
sees. The supervisor restarts a dead agent after 1 s, backing off to 30 s while it dies
young (within 10 s of its start), and gives up when the agent says another one holds
the host (exit status EXIT_TAKEN). Its folder holds supervisor.pid, agent.pid, the lock
the agent holds and agent.log.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nbcloud.agent.daemon import EXIT_TAKEN
from nbcloud.core.errors import HostError
from nbcloud.providers.libvirt.host import in_netns

YOUNG, FIRST_WAIT, LONGEST_WAIT = 10.0, 1.0, 30.0


def alive(pid: int | None, word: bytes = b"nbcloud.agent") -> bool:
    """Whether `pid` runs (not a zombie) and is nbcloud's agent or supervisor, `word` in
    its command line (a pid file that outlived its process may name another program)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if b"nbcloud.agent" not in argv or word not in argv:
            return False
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def program(pid: int) -> str:
    """The program (the Python interpreter) process `pid` runs, '' if unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def running(folder: Path) -> int | None:
    """The pid of the supervisor of `folder`, if it runs."""
    pid = read_pid(folder / "supervisor.pid")
    return pid if alive(pid, b"supervise") else None


def agent_pid(folder: Path) -> int | None:
    """The pid of the agent of `folder`, if it runs."""
    pid = read_pid(folder / "agent.pid")
    return pid if alive(pid, b"run") else None


def agent_argv(uri: str, inventory: Path | None, folder: Path,
               interval: float) -> list[str]:
    return ["--uri", uri, *(["--inventory", str(inventory)] if inventory else []),
            "--folder", str(folder), "--interval", str(interval)]


def spawn(uri: str, inventory: Path, folder: Path, *, netns: str | None = None,
          interval: float = 1.0, timeout: float = 30.0) -> int:
    """Start the supervisor (and so the agent) detached; returns the supervisor's pid."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "supervisor.pid").unlink(missing_ok=True)
    argv = [*in_netns(netns, []), sys.executable, "-m", "nbcloud.agent", "supervise", "--detach",
            *agent_argv(uri, inventory, folder, interval)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL, check=False)
    pid = running(folder)
    if out.returncode != 0 or pid is None:
        why = (out.stderr or out.stdout).strip().splitlines()
        raise HostError(f"the host agent's supervisor did not start: "
                        f"{why[-1] if why else 'see ' + str(folder / 'agent.log')}")
    return pid


def detach(folder: Path) -> None:
    """Fork away from the caller: the parent returns to exit once the child wrote its
    pid file; the child goes on in a session of its own, output to agent.log."""
    child = os.fork()
    if child:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and read_pid(folder / "supervisor.pid") != child:
            time.sleep(0.05)
        os._exit(0)
    os.setsid()
    logfile = os.open(folder / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(logfile, 1)
    os.dup2(logfile, 2)


def supervise(folder: Path, run_args: list[str]) -> int:
    """Run the agent (`python -m nbcloud.agent run RUN_ARGS`) and run it again whenever
    it dies, until SIGTERM; then stop it and return."""
    (folder / "supervisor.pid").write_text(f"{os.getpid()}\n")
    stopping = False
    child: subprocess.Popen | None = None

    def on_term(*_):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    wait = FIRST_WAIT
    try:
        while not stopping:
            started = time.monotonic()
            child = subprocess.Popen([sys.executable, "-m", "nbcloud.agent", "run",
                                      *run_args], stdin=subprocess.DEVNULL)
            status = child.wait()
            if stopping:
                break
            if status == EXIT_TAKEN:
                print("supervisor: another agent holds this host; giving up", flush=True)
                return status
            lived = time.monotonic() - started
            wait = min(wait * 2, LONGEST_WAIT) if lived < YOUNG else FIRST_WAIT
            print(f"supervisor: the agent exited ({status}) after {lived:.0f} s; "
                  f"starting it again in {wait:.0f} s", flush=True)
            deadline = time.monotonic() + wait
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.1)
        if child is not None:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 0
    finally:
        (folder / "supervisor.pid").unlink(missing_ok=True)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in pids if alive(p)]
        if not pids:
            return []
        time.sleep(0.1)
    return pids


def stop(folder: Path, timeout: float = 40.0) -> list[str]:
    """Stop the supervisor of `folder` and its agent (or an agent run by hand)."""
    sup, agent = running(folder), agent_pid(folder)
    target = sup or agent
    if target is None:
        return []
    os.kill(target, signal.SIGTERM)
    left = _wait_gone([p for p in (sup, agent) if p], timeout)
    for pid in left:   # stuck: a tick in a daemon that no longer answers
        os.kill(pid, signal.SIGKILL)
    _wait_gone(left, 5)
    return [f"stopped the host agent (pid {agent})" if agent else "stopped the host agent"]
