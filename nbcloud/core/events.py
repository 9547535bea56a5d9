"""Events between services: one service says what happened, the others that care listen.

"instance.deleted" (name, meta) lets security groups, port forwards and volumes forget an
instance without the instance service knowing them; "instance.state" (name, state) tells
the live topology that a domain changed state; "ipool.changed" tells the autoscaler that
a pool or its policy came or went; "host.down" (host, lost) tells the instance pools that
a host stopped answering with their members, "host.up" (host) that it is back. Listeners run in the emitter's thread; one
that fails does not stop the others, and its error is kept for the emitter to raise.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

INSTANCE_DELETED = "instance.deleted"
INSTANCE_STATE = "instance.state"
POOLS_CHANGED = "ipool.changed"
HOST_DOWN = "host.down"
HOST_UP = "host.up"


class Events:
    """Topic -> listeners. Thread-safe; `on` returns the function that unsubscribes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Callable[..., None]]] = {}

    def on(self, topic: str, listener: Callable[..., None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.setdefault(topic, []).append(listener)

        def off() -> None:
            with self._lock:
                if listener in self._listeners.get(topic, []):
                    self._listeners[topic].remove(listener)
        return off

    def listeners(self, topic: str) -> list[Callable[..., None]]:
        with self._lock:
            return list(self._listeners.get(topic, []))

    def emit(self, topic: str, **data) -> None:
        """Call every listener of `topic` with `data`; the first error is raised after
        all have run, so one broken listener cannot hide what the others must do."""
        first: BaseException | None = None
        for listener in self.listeners(topic):
            try:
                listener(**data)
            except Exception as exc:  # the others still run
                first = first or exc
        if first is not None:
            raise first
