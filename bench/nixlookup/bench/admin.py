"""Timed Admin calls for the benchmarks: Reload and ApplyDelta through the real client `AdminClient`.

Each call returns the wall time the client saw (request sent to answer received), which is what an
operator waits for: for ApplyDelta that includes making the delta durable, since the server answers only
once it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nixlookup.client import AdminClient
from nixlookup.client.results import RegisterInfo
from nixlookup.v1.vocabulary import ListKind

__all__ = ["TimedAdmin", "TimedDelta", "TimedReload"]


@dataclass(frozen=True)
class TimedReload:
    wall_s: float
    server_load_s: float
    version: str
    count: int


@dataclass(frozen=True)
class TimedDelta:
    wall_s: float
    version: str
    added: int
    removed: int


class TimedAdmin:
    """One `AdminClient` to a server, each call timed."""

    def __init__(self, target: str) -> None:
        self._admin = AdminClient(target)

    def close(self) -> None:
        self._admin.close()

    def __enter__(self) -> TimedAdmin:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def register_info(self) -> RegisterInfo:
        return self._admin.register_info(timeout=10.0)

    def reload(self, path: Path, *, fmt: str = "", force: bool = True) -> TimedReload:
        """Reload the register from a file on the server; `force` so a changed count is never refused."""
        started = time.perf_counter()
        answer = self._admin.reload(path, fmt=fmt, force=force)
        wall = time.perf_counter() - started
        return TimedReload(
            wall_s=wall,
            server_load_s=answer.load_seconds,
            version=answer.info.version,
            count=answer.info.count,
        )

    def apply_delta(
        self,
        *,
        kind: ListKind = ListKind.REGISTER,
        caller: str = "",
        add: NDArray[np.uint64] | None = None,
        remove: NDArray[np.uint64] | None = None,
        add_until_days: NDArray[np.uint32] | None = None,
    ) -> TimedDelta:
        """Apply a delta to one list in one request; returns once the server says it is durable."""
        numbers = max(0 if add is None else add.size, 0 if remove is None else remove.size, 1)
        started = time.perf_counter()
        (answer,) = self._admin.apply_delta(
            kind=kind,
            caller=caller,
            add_keys=add,
            remove_keys=remove,
            until_day=0 if add_until_days is None else add_until_days,
            chunk=numbers,
        )
        wall = time.perf_counter() - started
        return TimedDelta(wall_s=wall, version=answer.version, added=answer.added, removed=answer.removed)
