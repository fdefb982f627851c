"""One probe for all of a caller's lists: the bulk path's answer to "which numbers does this caller know?".

A caller may have several lists (`lists.CALLER_LISTS`: opt-out, customer relationships, consents).
Probing each for every number of a batch would cost one index lookup per list and number, plus one more
per list to tell "absent" from "present with no end date" (`Index.values_many` answers 0 for both).
Instead the lists are merged
once into a `CallerOverlay`: the union of their keys behind one `KeyProbe` (a cache-sized filter in
front of an exact hash table, see `_probe`) whose 64-bit payload per key says, per list, until which day
the key's entry counts. A batch then costs one probe; a number
on the lists costs one more cache line. The grace period is folded into the payload, so an overlay
belongs to one `Policy` (one set of settings).

Overlays are immutable and built from immutable indexes, so one built for a given triple of list
objects stays right for as long as those objects serve. `OverlayCache` keeps, per caller, the overlays of
its latest list versions, recognised by the identity of the list objects (which it holds, so an identity
is never reused while cached). Building one costs ~0.2-0.5 s for 600k listed numbers, paid once per list
version by the first batch that needs it (or ahead of time through `Policy.prepare`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.index import Index, sorted_unique
from nixlookup.server.lists import CALLER_LISTS
from nixlookup.server.policy._probe import KeyProbe

__all__ = [
    "FOREVER",
    "MAX_END_DAY",
    "UNTIL_BITS",
    "UNTIL_MASK",
    "CallerOverlay",
    "OverlayCache",
]

MAX_END_DAY = (1 << 20) - 1
"""End days are kept in 20 bits (up to the year 4840); a later end reads as this day. Both paths clamp."""

_UNTIL_BITS = 21
FOREVER = (1 << _UNTIL_BITS) - 1
"""The "counts until" day of an ongoing relationship or a consent without expiry."""

# A probe payload, per key: one 21-bit field per caller list, in `CALLER_LISTS` order (field i at bits
# 21*i .. 21*i+20): the last day the key's entry counts (a dated list's end day, plus the grace period
# where the list has one; FOREVER without an end, and always FOREVER for an undated list such as the
# opt-out list); 0 = not on that list. "Live" is then a single `until >= today`, and the valid_until cap
# a single minimum. Three fields fit in 64 bits; a register with more caller lists needs a wider payload.
_U64 = np.uint64
UNTIL_BITS = _UNTIL_BITS
UNTIL_MASK = _U64(FOREVER)
if len(CALLER_LISTS) * _UNTIL_BITS > 64:
    raise ImportError(f"{len(CALLER_LISTS)} caller lists do not fit a 64-bit overlay payload")


def _counts_until(ends: NDArray[np.uint32], grace_days: int) -> NDArray[np.uint64]:
    """Per entry: the last day it counts (end + grace, clamped like the scalar path), FOREVER for no end."""
    clamped = np.minimum(ends.astype(np.uint64), _U64(MAX_END_DAY))
    return np.where(clamped == 0, UNTIL_MASK, clamped + _U64(grace_days))


def _keys_and_ends(index: Index | None) -> tuple[NDArray[np.uint64], NDArray[np.uint32]]:
    if index is None or len(index) == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint32)
    keys = np.asarray(index.sorted_keys(), dtype=np.uint64)
    ends = index.sorted_values()
    if ends is None:
        return keys, np.zeros(keys.size, dtype=np.uint32)
    return keys, np.asarray(ends, dtype=np.uint32)


class CallerOverlay:
    """A caller's opt-out, relationship and consent lists merged behind one probe."""

    __slots__ = ("_probe", "count")

    def __init__(self, probe: KeyProbe, count: int) -> None:
        self._probe = probe
        self.count = count
        """How many distinct numbers the caller's lists hold together."""

    @classmethod
    def build(cls, lists: Sequence[Index | None], *, relationship_grace_days: int) -> CallerOverlay | None:
        """Merge a caller's lists (one per `CALLER_LISTS` row, None where it has none); None when together
        they hold no number at all."""
        if not 0 <= relationship_grace_days < FOREVER - MAX_END_DAY:
            raise ValueError(f"relationship_grace_days {relationship_grace_days} does not fit the payload")
        if len(lists) != len(CALLER_LISTS):
            raise ValueError(f"one list per caller list kind expected, got {len(lists)}")
        entries = [_keys_and_ends(index) for index in lists]
        union = sorted_unique(np.concatenate([keys for keys, _ in entries]))  # np.unique: 40x slower
        if union.size == 0:
            return None
        payloads = np.zeros(union.size, dtype=np.uint64)
        for field, (spec, (keys, ends)) in enumerate(zip(CALLER_LISTS, entries, strict=True)):
            if not spec.dated:
                until = np.full(keys.size, UNTIL_MASK, dtype=np.uint64)
            else:
                until = _counts_until(ends, relationship_grace_days if spec.grace else 0)
            payloads[np.searchsorted(union, keys)] |= until << _U64(field * _UNTIL_BITS)
        return cls(KeyProbe(union, payloads), int(union.size))

    @property
    def probe_parts(self) -> tuple[Any, ...]:
        """What compiled loops pass to `probe_kernel` after the keys (`KeyProbe.parts`)."""
        return self._probe.parts


_CallerLists = tuple[Index | None, ...]


class OverlayCache:
    """Each caller's overlay for its current lists (and the previous ones, while a swap settles)."""

    def __init__(
        self, *, relationship_grace_days: int, max_callers: int = 1024, versions_per_caller: int = 2
    ) -> None:
        # One overlay per caller costs ~15 bytes per listed number, about what the lists themselves cost.
        # Two versions per caller: batches still running on the state before a list change do not
        # evict the overlay of the state after it (and vice versa) while both are in use.
        self._grace_days = relationship_grace_days
        self._max_callers = max_callers
        self._versions_per_caller = versions_per_caller
        self._entries: OrderedDict[str, list[tuple[_CallerLists, CallerOverlay | None]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, caller: str, lists: _CallerLists) -> CallerOverlay | None:
        """The overlay for this caller's lists, building it on first use of these list versions."""
        with self._lock:
            for built_from, overlay in self._entries.get(caller, ()):
                if all(a is b for a, b in zip(built_from, lists, strict=True)):
                    self._entries.move_to_end(caller)
                    return overlay
        # Built outside the lock: other callers' batches must not wait for this build.
        overlay = CallerOverlay.build(lists, relationship_grace_days=self._grace_days)
        with self._lock:
            versions = self._entries.setdefault(caller, [])
            versions.insert(0, (lists, overlay))
            del versions[self._versions_per_caller :]
            self._entries.move_to_end(caller)
            while len(self._entries) > self._max_callers:
                self._entries.popitem(last=False)
        return overlay
