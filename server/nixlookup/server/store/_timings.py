"""Durations of the store's durable operations, handed to whoever listens (the server's metrics).

The store records each reload, delta, compaction and journal fsync once it finished; listeners must be
quick and must not raise (they run in the writer's thread, some under its write lock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["Operation", "OperationTimings"]

Operation = Literal["reload", "delta", "compact", "journal_fsync"]


class OperationTimings:
    """Fans each finished operation's duration out to listeners."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Operation, float], None]] = []

    def add_listener(self, listener: Callable[[Operation, float], None]) -> None:
        self._listeners.append(listener)

    def record(self, operation: Operation, seconds: float) -> None:
        for listener in self._listeners:
            listener(operation, seconds)
