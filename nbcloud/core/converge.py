"""Making an engine what the inventory's records say while other threads and processes
change those records: the mechanism every read-modify-write of a record ends with."""
from __future__ import annotations

from collections.abc import Callable


def apply_until_stable(read: Callable[[], object],
                       apply: Callable[[object], None]) -> object:
    """Make the engine what the records say, even when other threads or processes change
    those records meanwhile: `apply(state)` what `read()` gives, then read again, and
    apply again until two reads agree. Returns the state applied last.

    Why this suffices: each writer changes a record in one `BEGIN IMMEDIATE` transaction
    (`update`) and then calls this. The engine's last apply was made by some writer from
    a read R; that writer read again after it, and stopped only because the records were
    still R; any later change would be followed by its own writer's apply, which would
    then be the last. So the last apply always matches the final records, with no lock
    held across the engine's calls."""
    state = read()
    while True:
        apply(state)
        now = read()
        if now == state:
            return state
        state = now
