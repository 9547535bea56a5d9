"""Undo steps of an operation that fails half-way: what it made is unmade, last first."""
from __future__ import annotations

from collections.abc import Callable


class Undo:
    """Collects undo steps; as a context manager, runs them when the body raises.

    `errors` then holds what the undo itself could not do (a dead daemon, say), so the
    caller can record the operation as interrupted rather than failed."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], object]] = []
        self.errors: list[str] = []

    def add(self, step: Callable[[], object]) -> None:
        self.steps.append(step)

    def run(self) -> list[str]:
        """Run the steps, last first, each even if an earlier one failed; returns the
        errors of those that failed."""
        errors = []
        for step in reversed(self.steps):
            try:
                step()
            except Exception as exc:  # best effort: keep undoing the rest
                errors.append(str(exc))
        self.steps.clear()
        self.errors = errors
        return errors

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.run()
        return False
