"""One probe for all of a caller's lists: the bulk path's answer to "which numbers does this caller know?".

A caller may have three lists (opt-out, customer relationships, consents). Probing each for every number
of a batch would cost up to three index lookups per number, plus one more per list to tell "absent" from
"present with no end date" (`Index.values_many` answers 0 for both). Instead the three lists are merged
once into a `CallerOverlay`: the union of their keys behind one `KeyProbe` (a cache-sized filter in
front of an exact hash table, see `_policy_probe`) whose 64-bit payload per key says which lists hold it
and carries its end days. A batch then costs one probe; a number on the lists costs one more cache line.

Overlays are immutable and built from immutable indexes, so one built for a given triple of list
objects stays right for as long as those objects serve. `OverlayCache` keeps, per caller, the overlays of
its latest list versions, recognised by the identity of the list objects (which it holds, so an identity
is never reused while cached). Building one costs ~0.2-0.5 s for 600k listed numbers, paid once per list
version by the first batch that needs it (or ahead of time through `Policy.prepare`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._policy_probe import KeyProbe
from nixlookup.server.index import Index

__all__ = [
    "MAX_END_DAY",
    "ON_CONSENT",
    "ON_OPT_OUT",
    "ON_RELATIONSHIP",
    "CallerHits",
    "CallerOverlay",
    "OverlayCache",
]

ON_OPT_OUT = np.uint8(1)
ON_RELATIONSHIP = np.uint8(2)
ON_CONSENT = np.uint8(4)

MAX_END_DAY = (1 << 20) - 1
"""End days are kept in 20 bits (up to the year 4840); a later end reads as this day. Both paths clamp."""

# A probe payload: bits 0-2 the ON_* flags, then the relationship's end day, then the consent's expiry.
_U64 = np.uint64
_FLAG_MASK = _U64(7)
_DAY_MASK = _U64(MAX_END_DAY)
_RELATIONSHIP_SHIFT = _U64(3)
_CONSENT_SHIFT = _U64(23)


def _clamped(ends: NDArray[np.uint32]) -> NDArray[np.uint64]:
    return np.minimum(ends.astype(np.uint64), _DAY_MASK)


@dataclass(frozen=True, slots=True)
class CallerHits:
    """The numbers of one batch found on any of the caller's lists."""

    positions: NDArray[np.intp]  # indexes into the batch, ascending
    flags: NDArray[np.uint8]  # ON_* bits per hit
    relationship_end: NDArray[np.uint32]  # end day per hit, 0 = no end (or not on that list)
    consent_end: NDArray[np.uint32]  # expiry day per hit, 0 = no expiry (or not on that list)


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
    def build(
        cls, opt_out: Index | None, relationship: Index | None, consent: Index | None
    ) -> CallerOverlay | None:
        """Merge the lists; None when together they hold no number at all."""
        opt_keys, _ = _keys_and_ends(opt_out)
        rel_keys, rel_ends = _keys_and_ends(relationship)
        con_keys, con_ends = _keys_and_ends(consent)
        union = np.unique(np.concatenate([opt_keys, rel_keys, con_keys]))
        if union.size == 0:
            return None
        payloads = np.zeros(union.size, dtype=np.uint64)
        payloads[np.searchsorted(union, opt_keys)] |= _U64(ON_OPT_OUT)
        rel_rows = np.searchsorted(union, rel_keys)
        payloads[rel_rows] |= _U64(ON_RELATIONSHIP) | (_clamped(rel_ends) << _RELATIONSHIP_SHIFT)
        con_rows = np.searchsorted(union, con_keys)
        payloads[con_rows] |= _U64(ON_CONSENT) | (_clamped(con_ends) << _CONSENT_SHIFT)
        return cls(KeyProbe(union, payloads), int(union.size))

    def lookup(self, keys: NDArray[np.uint64]) -> CallerHits | None:
        """The batch's numbers on any of the lists, or None when there are none (the common case)."""
        positions, payloads = self._probe.find(keys)
        if positions.size == 0:
            return None
        return CallerHits(
            positions=positions,
            flags=(payloads & _FLAG_MASK).astype(np.uint8),
            relationship_end=((payloads >> _RELATIONSHIP_SHIFT) & _DAY_MASK).astype(np.uint32),
            consent_end=((payloads >> _CONSENT_SHIFT) & _DAY_MASK).astype(np.uint32),
        )


_ListTriple = tuple[Index | None, Index | None, Index | None]


class OverlayCache:
    """Each caller's overlay for its current lists (and the previous ones, while a swap settles)."""

    def __init__(self, *, max_callers: int = 1024, versions_per_caller: int = 2) -> None:
        # One overlay per caller costs ~35 bytes per listed number, about what the lists themselves
        # cost. Two versions per caller: batches still running on the state before a list change do not
        # evict the overlay of the state after it (and vice versa) while both are in use.
        self._max_callers = max_callers
        self._versions_per_caller = versions_per_caller
        self._entries: OrderedDict[str, list[tuple[_ListTriple, CallerOverlay | None]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, caller: str, lists: _ListTriple) -> CallerOverlay | None:
        """The overlay for this caller's lists, building it on first use of these list versions."""
        with self._lock:
            for built_from, overlay in self._entries.get(caller, ()):
                if all(a is b for a, b in zip(built_from, lists, strict=True)):
                    self._entries.move_to_end(caller)
                    return overlay
        # Built outside the lock: other callers' batches must not wait for this build.
        overlay = CallerOverlay.build(*lists)
        with self._lock:
            versions = self._entries.setdefault(caller, [])
            versions.insert(0, (lists, overlay))
            del versions[self._versions_per_caller :]
            self._entries.move_to_end(caller)
            while len(self._entries) > self._max_callers:
                self._entries.popitem(last=False)
        return overlay
