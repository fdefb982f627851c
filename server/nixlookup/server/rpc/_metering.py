"""Metering: how many numbers each principal checked as each caller, by verdict. No number is kept.

Theory of operation:
- `Meter.count` is called once per Check and once per CheckStream batch with the counts the answer
  already has (allowed, blocked, invalid), keyed by (principal name, caller): a dict update under a lock,
  ~0.3 us, nothing per number. A company can be shown and billed what it washed without the server
  keeping what it washed.
- The counters cover the time since `since` (the server's start): `Admin/GetUsage` (role ``admin``,
  ``nixlookup admin usage``) reads them. They live in memory only; a deployment that bills scrapes them
  before a restart (docs/security.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Meter", "UsageRow"]


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Numbers one principal checked as one caller ("" = none), by verdict, since the meter started."""

    principal: str
    caller: str
    calls: int  # one per Check, one per CheckStream batch
    allowed: int
    blocked: int
    invalid: int

    @property
    def numbers(self) -> int:
        return self.allowed + self.blocked + self.invalid


class Meter:
    """Counters per (principal, caller); see the module doc."""

    def __init__(self, *, now: datetime | None = None) -> None:
        self.since = now or datetime.now(UTC)
        self._lock = threading.Lock()
        # (principal, caller) -> [checks, allowed, blocked, invalid]
        self._counts: dict[tuple[str, str], list[int]] = {}

    def count(self, principal: str, caller: str, *, allowed: int, blocked: int, invalid: int) -> None:
        """Add one call's answers."""
        key = (principal, caller)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0, 0, 0, 0]
            counts[0] += 1
            counts[1] += allowed
            counts[2] += blocked
            counts[3] += invalid

    def rows(self, principal: str | None = None) -> list[UsageRow]:
        """Every (principal, caller)'s counts, sorted; only `principal`'s when given."""
        with self._lock:
            items = [(key, list(counts)) for key, counts in self._counts.items()]
        return [
            UsageRow(name, caller, *counts)
            for (name, caller), counts in sorted(items)
            if principal is None or name == principal
        ]
