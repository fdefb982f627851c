"""`KeyProbe`: which numbers of a batch are in a small set of keys, and at which row, for a few ns each.

A caller's lists (say 600k numbers) are far smaller than the register, yet an exact membership structure
for them still spans megabytes, so probing it for every number of a batch costs a cache miss per number,
about as much as the register check itself. Most numbers of a batch are on none of the caller's lists,
so the probe answers in two steps:

1. A one-hash Bloom filter, a bitset of 16-32 bits per key (about 1-2 MB for 600k keys, mostly
   cache-resident), rules out ~95% of the misses with one gather and three integer operations per number.
2. The candidates that pass go to a bucketed hash table: 4 slots of keys per bucket (1.5 keys per bucket
   on average), Fibonacci hashing, one gather of 4 keys per candidate; a matching slot gives the key's
   row. The rare keys that did not fit their bucket sit in a small sorted array, searched only for
   candidates whose bucket overflowed.

The answer is exact: the filter has false positives (the table removes them), never false negatives.
Built once per list version; immutable afterwards.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["KeyProbe"]

_U64 = np.uint64
_FILTER_HASH: Final = _U64(0x9E3779B97F4A7C15)  # Fibonacci hashing: golden-ratio multiplier
_TABLE_HASH: Final = _U64(0xC2B2AE3D27D4EB4F)  # a different odd multiplier, independent of the filter's
_FILTER_BITS_PER_KEY: Final = 16  # at least; rounded up to a power of two: false positives 3-6%
_MIN_FILTER_BITS: Final = 1 << 16
_SLOTS: Final = 4  # four bools view as one uint32 in `find`: do not change without changing that
_KEYS_PER_BUCKET: Final = 1.5  # average load; ~2% of buckets overflow 4 slots
_EMPTY: Final = _U64(2**64 - 1)  # never a phone-number key (E.164 has at most 15 digits)


class KeyProbe:
    """Exact membership and row lookup over a fixed set of uint64 keys, vectorised."""

    __slots__ = (
        "_filter",
        "_filter_shift",
        "_n_buckets",
        "_overflow_keys",
        "_overflow_rows",
        "_overflowed",
        "_slot_keys",
        "_slot_rows",
    )

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        """`keys` sorted and unique; a key's row is its position in `keys`."""
        count = int(keys.size)
        filter_bits = max(_MIN_FILTER_BITS, 1 << max(0, count * _FILTER_BITS_PER_KEY - 1).bit_length())
        self._filter_shift = _U64(64 - (filter_bits.bit_length() - 1))
        bits = np.zeros(filter_bits, dtype=np.bool_)
        bits[self._filter_slot(keys)] = True
        self._filter = np.packbits(bits, bitorder="little")

        n_buckets = max(1, int(count / _KEYS_PER_BUCKET) + 1)
        self._n_buckets = _U64(n_buckets)
        bucket = self._bucket(keys)
        order = np.argsort(bucket, kind="stable")
        sorted_buckets = bucket[order]
        group_start = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
        group_sizes = np.diff(np.r_[group_start, count])
        rank = np.arange(count) - np.repeat(group_start, group_sizes)
        fits = rank < _SLOTS
        self._slot_keys = np.full((n_buckets, _SLOTS), _EMPTY, dtype=np.uint64)
        self._slot_rows = np.full((n_buckets, _SLOTS), -1, dtype=np.int32)
        self._slot_keys[sorted_buckets[fits], rank[fits]] = keys[order[fits]]
        self._slot_rows[sorted_buckets[fits], rank[fits]] = order[fits]
        spilled = np.sort(order[~fits])  # rows ascending = keys ascending
        self._overflow_keys = keys[spilled]
        self._overflow_rows = spilled.astype(np.int64)
        self._overflowed = np.zeros(n_buckets, dtype=np.bool_)
        self._overflowed[sorted_buckets[~fits]] = True

    def _filter_slot(self, keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
        # The multiply wraps modulo 2**64 by design; the top bits are the best-mixed ones.
        return (keys * _FILTER_HASH) >> self._filter_shift

    def _bucket(self, keys: NDArray[np.uint64]) -> NDArray[np.intp]:
        high = (keys * _TABLE_HASH) >> _U64(32)
        return ((high * self._n_buckets) >> _U64(32)).astype(np.intp)

    @property
    def nbytes(self) -> int:
        return int(
            self._filter.nbytes
            + self._slot_keys.nbytes
            + self._slot_rows.nbytes
            + self._overflow_keys.nbytes
            + self._overflow_rows.nbytes
            + self._overflowed.nbytes
        )

    def find(self, queries: NDArray[np.uint64]) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
        """(positions in `queries` that are keys, ascending; their rows)."""
        # Slots are < 2**63, so the int64 view is exact and spares `take` a conversion.
        slot = self._filter_slot(queries).view(np.int64)
        passed = (self._filter.take(slot >> 3) >> (slot & 7).astype(np.uint8)) & np.uint8(1)
        candidates = np.flatnonzero(passed)
        if candidates.size == 0:
            return candidates, np.empty(0, dtype=np.int64)
        wanted = queries.take(candidates)
        bucket = self._bucket(wanted)
        matches = self._slot_keys[bucket] == wanted[:, None]
        # A key sits in at most one slot: the four bools of a row read as one uint32 say "any slot
        # matched", argmax says which (both much cheaper than a reduction along axis 1).
        in_slot = matches.view(np.uint32).ravel() != 0
        rows = self._slot_rows.ravel().take(bucket * _SLOTS + matches.argmax(axis=1)).astype(np.int64)
        rows[~in_slot] = -1
        if self._overflow_keys.size:
            spill = np.flatnonzero(self._overflowed.take(bucket) & ~in_slot)
            if spill.size:
                at = np.searchsorted(self._overflow_keys, wanted[spill])
                clipped = np.minimum(at, self._overflow_keys.size - 1)
                hit = self._overflow_keys[clipped] == wanted[spill]
                rows[spill[hit]] = self._overflow_rows[clipped[hit]]
        found = rows >= 0
        return candidates[found], rows[found]
