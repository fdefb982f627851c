"""One probe for all of a caller's lists: the bulk path's answer to "which numbers does this caller know?".

A caller may have three lists (opt-out, customer relationships, consents). Probing each for every number
of a batch would cost up to three index lookups per number, plus one more per list to tell "absent" from
"present with no end date" (`Index.values_many` answers 0 for both). Instead the three lists are merged
once into a `CallerOverlay`: the sorted union of their keys behind one `KeyProbe` (a cache-sized filter
in front of an exact hash table, see `_policy_probe`) and, aligned with the union, small tables of which
lists hold each key and its end days. A batch then costs one probe, a few ns per number; only the few
numbers that hit are looked up in the tables.

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

__all__ = ["ON_CONSENT", "ON_OPT_OUT", "ON_RELATIONSHIP", "CallerHits", "CallerOverlay", "OverlayCache"]

ON_OPT_OUT = np.uint8(1)
ON_RELATIONSHIP = np.uint8(2)
ON_CONSENT = np.uint8(4)


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

    __slots__ = ("_consent_end", "_flags", "_probe", "_relationship_end")

    def __init__(
        self,
        probe: KeyProbe,
        flags: NDArray[np.uint8],
        relationship_end: NDArray[np.uint32],
        consent_end: NDArray[np.uint32],
    ) -> None:
        self._probe = probe
        self._flags = flags
        self._relationship_end = relationship_end
        self._consent_end = consent_end

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
        flags = np.zeros(union.size, dtype=np.uint8)
        relationship_end = np.zeros(union.size, dtype=np.uint32)
        consent_end = np.zeros(union.size, dtype=np.uint32)
        flags[np.searchsorted(union, opt_keys)] |= ON_OPT_OUT
        rel_rows = np.searchsorted(union, rel_keys)
        flags[rel_rows] |= ON_RELATIONSHIP
        relationship_end[rel_rows] = rel_ends
        con_rows = np.searchsorted(union, con_keys)
        flags[con_rows] |= ON_CONSENT
        consent_end[con_rows] = con_ends
        return cls(KeyProbe(union), flags, relationship_end, consent_end)

    @property
    def count(self) -> int:
        """How many distinct numbers the caller's lists hold together."""
        return int(self._flags.size)

    def lookup(self, keys: NDArray[np.uint64]) -> CallerHits | None:
        """The batch's numbers on any of the lists, or None when there are none (the common case)."""
        positions, hit_rows = self._probe.find(keys)
        if positions.size == 0:
            return None
        return CallerHits(
            positions=positions,
            flags=self._flags[hit_rows],
            relationship_end=self._relationship_end[hit_rows],
            consent_end=self._consent_end[hit_rows],
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
