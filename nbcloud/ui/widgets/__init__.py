"""Widgets of the user surface (DESIGN.md's layers: `magics.py / widgets/`): the `%cloud ls`
table with per-row actions (ls.py) and the instance create form (form.py).

Widgets only parse clicks into calls on the Python API and show what comes back; like the
magics they never talk to libvirt themselves.
"""
from __future__ import annotations

import threading
import weakref

_live: weakref.WeakSet = weakref.WeakSet()
_live_lock = threading.Lock()


def register(widget) -> None:
    """Remember a widget that runs background work, so unload can stop it."""
    with _live_lock:
        _live.add(widget)


def stop_all() -> None:
    """Stop the background work of every widget (on `%unload_ext nbcloud`)."""
    with _live_lock:
        widgets = list(_live)
    for widget in widgets:
        widget.close_actions()
