"""One probe for all of a caller's lists: the bulk path's answer to "which numbers does this caller know?".

A caller may have three lists (opt-out, customer relationships, consents). Probing each for every number
of a batch would cost up to three index lookups per number, plus one more per list to tell "absent" from
"present with no end date" (`Index.values_many` answers 0 for both). Instead the three lists are merged
once into a `CallerOverlay`: the union of their keys behind one `KeyProbe` (a cache-sized filter in
front of an exact hash table, see `_policy_probe`) whose 64-bit payload per key says whether it opted
out and until which day its relationship and its consent count. A batch then costs one probe; a number
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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.index import Index, sorted_unique
from nixlookup.server.policy._probe import KeyProbe

__all__ = [
    "FOREVER",
    "MAX_END_DAY",
    "CallerOverlay",
    "OverlayCache",
]

MAX_END_DAY = (1 << 20) - 1
"""End days are kept in 20 bits (up to the year 4840); a later end reads as this day. Both paths clamp."""

_UNTIL_BITS = 21
FOREVER = (1 << _UNTIL_BITS) - 1
"""The "counts until" day of an ongoing relationship or a consent without expiry."""

# A probe payload, per key: bit 0 = on the opt-out list; bits 1-21 = the last day the relationship
# counts (its end day + the grace period; FOREVER when ongoing; 0 = no relationship); bits 22-42 = the
# last day the consent counts (its expiry; FOREVER when none; 0 = no consent). "Live" is then a single
# `until >= today`, and the valid_until cap a single minimum.
_U64 = np.uint64
_UNTIL_MASK = _U64(FOREVER)
_OPT_OUT_BIT = _U64(1)
_RELATIONSHIP_SHIFT = _U64(1)
_CONSENT_SHIFT = _U64(1 + _UNTIL_BITS)


def _counts_until(ends: NDArray[np.uint32], grace_days: int) -> NDArray[np.uint64]:
    """Per entry: the last day it counts (end + grace, clamped like the scalar path), FOREVER for no end."""
    clamped = np.minimum(ends.astype(np.uint64), _U64(MAX_END_DAY))
    return np.where(clamped == 0, _UNTIL_MASK, clamped + _U64(grace_days))


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
        cls,
        opt_out: Index | None,
        relationship: Index | None,
        consent: Index | None,
        *,
        relationship_grace_days: int,
    ) -> CallerOverlay | None:
        """Merge the lists; None when together they hold no number at all."""
        if not 0 <= relationship_grace_days < FOREVER - MAX_END_DAY:
            raise ValueError(f"relationship_grace_days {relationship_grace_days} does not fit the payload")
        opt_keys, _ = _keys_and_ends(opt_out)
        rel_keys, rel_ends = _keys_and_ends(relationship)
        con_keys, con_ends = _keys_and_ends(consent)
        union = sorted_unique(np.concatenate([opt_keys, rel_keys, con_keys]))  # np.unique: 40x slower
        if union.size == 0:
            return None
        payloads = np.zeros(union.size, dtype=np.uint64)
        payloads[np.searchsorted(union, opt_keys)] |= _OPT_OUT_BIT
        rel_until = _counts_until(rel_ends, relationship_grace_days)
        payloads[np.searchsorted(union, rel_keys)] |= rel_until << _RELATIONSHIP_SHIFT
        payloads[np.searchsorted(union, con_keys)] |= _counts_until(con_ends, 0) << _CONSENT_SHIFT
        return cls(KeyProbe(union, payloads), int(union.size))

    @property
    def probe_parts(self) -> tuple[Any, ...]:
        """What compiled loops pass to `probe_kernel` after the keys (`KeyProbe.parts`); payloads are
        taken apart with `_policy_kernels.decode_payload`."""
        return self._probe.parts


_ListTriple = tuple[Index | None, Index | None, Index | None]


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
        overlay = CallerOverlay.build(*lists, relationship_grace_days=self._grace_days)
        with self._lock:
            versions = self._entries.setdefault(caller, [])
            versions.insert(0, (lists, overlay))
            del versions[self._versions_per_caller :]
            self._entries.move_to_end(caller)
            while len(self._entries) > self._max_callers:
                self._entries.popitem(last=False)
        return overlay
