"""Reliability tier: soak, faults, hostile input and secrets, on the real daemon.

Runs in the test command (`make test`), inside the test network namespace, so it is bounded
in time (the soak stops at a count or a time budget, whichever comes first). Every test
tells the session `recorder` what it tried (faults, hostile inputs, soak cycles) and what
it found left behind or lost; at the end of the session one line sums it up.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

PREFIX = "rl-"


@dataclass
class Recorder:
    """What the reliability tests tried and what they found lost (thread-safe counters)."""
    faults: list[str] = field(default_factory=list)
    hostile: dict[str, int] = field(default_factory=dict)
    soak_cycles: int = 0
    lost: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fault(self, what: str) -> None:
        """One fault injected (and survived or not: the test's assertions say)."""
        with self._lock:
            self.faults.append(what)

    def hostile_input(self, what: str, n: int = 1) -> None:
        """`n` hostile inputs of kind `what` tried."""
        with self._lock:
            self.hostile[what] = self.hostile.get(what, 0) + n

    def soaked(self, n: int = 1) -> None:
        with self._lock:
            self.soak_cycles += n

    def lose(self, things: list[str]) -> None:
        """Objects found left behind (or gone) where nothing should be."""
        with self._lock:
            self.lost += things

    def summary(self) -> str:
        hostile = sum(self.hostile.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.hostile.items()))
        lost = (f"LOST OR LEAKED {len(self.lost)}: {', '.join(self.lost[:10])}"
                if self.lost else "nothing lost or leaked")
        return (f"reliability: {len(self.faults)} faults and {hostile} hostile inputs tried"
                f"{f' ({kinds})' if kinds else ''}, {self.soak_cycles} soak create/delete "
                f"cycles; {lost}")


_RECORDER = pytest.StashKey[Recorder]()


@pytest.fixture(scope="session")
def recorder(request) -> Recorder:
    """The session's tally of faults, hostile inputs, soak cycles and losses."""
    rec = request.config.stash.get(_RECORDER, None)
    if rec is None:
        rec = request.config.stash[_RECORDER] = Recorder()
    return rec


@pytest.fixture(scope="session")
def cloud(tmp_path_factory, recorder):
    """A Cloud on the real daemon with an inventory of its own; at the end of the session
    anything named rl-* still in libvirt or the inventory is recorded as leaked."""
    from tests.reliability.leaks import leftovers
    from tests.real_daemon import open_cloud
    c = open_cloud(tmp_path_factory, "reliability")
    yield c
    recorder.lose([f"at the end of the session: {x}" for x in leftovers(c, PREFIX)])
    c.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rec = config.stash.get(_RECORDER, None)
    if rec is not None:
        terminalreporter.write_sep("-", "reliability summary")
        terminalreporter.write_line(rec.summary())
