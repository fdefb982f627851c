"""`KeyProbe`: which numbers of a batch are in a small set of keys, and the 64-bit payload of each.

A caller's lists (say 600k numbers) are far smaller than the register, yet an exact structure for them
still spans megabytes, so probing it for every number of a batch costs a cache miss per number, about as
much as the register check itself. Most numbers of a batch are on none of the caller's lists, so the probe
answers in two steps:

1. A one-hash Bloom filter, a bitset of 16-32 bits per key (about 2 MB for 600k keys, so it stays in
   cache across batches), rules out ~96% of the misses with one gather and a few integer operations.
2. The candidates that pass go to a bucketed hash table whose bucket is exactly one 64-byte cache line:
   4 keys and their 4 payloads. One gather per candidate finds the key *and* its payload, so a hit costs
   one cache miss, not one for the key and more for what is stored about it. The rare keys that did not
   fit their bucket (2 keys per bucket on average) sit in a small sorted array, searched only for
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
_FILTER_BITS_PER_KEY: Final = 16  # at least; rounded up to a power of two: false positives 2-6%
_MIN_FILTER_BITS: Final = 1 << 16
_SLOTS: Final = 4  # 4 keys + 4 payloads = 64 bytes; `find` also reads the 4 match bools as one uint32
_KEYS_PER_BUCKET: Final = 2.0  # average load; ~5% of buckets overflow, ~1.7% of keys spill
_LINE_BYTES: Final = 64
_EMPTY: Final = _U64(2**64 - 1)  # never a phone-number key (E.164 has at most 15 digits)


def _cache_aligned(rows: int, columns: int) -> NDArray[np.uint64]:
    """A zeroed (rows, columns) uint64 array whose rows start on 64-byte boundaries."""
    raw = np.zeros(rows * columns + _LINE_BYTES // 8, dtype=np.uint64)
    skip = (-raw.ctypes.data % _LINE_BYTES) // 8
    return raw[skip : skip + rows * columns].reshape(rows, columns)


class KeyProbe:
    """Exact membership of uint64 keys, each with a uint64 payload, answered for whole batches."""

    __slots__ = ("_filter", "_filter_shift", "_n_buckets", "_overflow_keys", "_overflow_payloads", "_table")

    def __init__(self, keys: NDArray[np.uint64], payloads: NDArray[np.uint64]) -> None:
        """`keys` unique (any order), `payloads` aligned with them."""
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
        rank = np.arange(count) - np.repeat(group_start, np.diff(np.r_[group_start, count]))
        fits = rank < _SLOTS
        table = _cache_aligned(n_buckets, 2 * _SLOTS)
        table[:, :_SLOTS] = _EMPTY
        table[sorted_buckets[fits], rank[fits]] = keys[order[fits]]
        table[sorted_buckets[fits], _SLOTS + rank[fits]] = payloads[order[fits]]
        self._table = table
        spilled = order[~fits]
        by_key = np.argsort(keys[spilled])
        self._overflow_keys = keys[spilled][by_key]
        self._overflow_payloads = payloads[spilled][by_key]

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
            + self._table.nbytes
            + self._overflow_keys.nbytes
            + self._overflow_payloads.nbytes
        )

    def find(self, queries: NDArray[np.uint64]) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
        """(positions in `queries` that are keys, ascending; their payloads)."""
        # Slots are < 2**63, so the int64 view is exact and spares `take` a conversion.
        slot = self._filter_slot(queries).view(np.int64)
        passed = (self._filter.take(slot >> 3) >> (slot & 7).astype(np.uint8)) & np.uint8(1)
        candidates = np.flatnonzero(passed.view(np.bool_))  # 0/1 bytes read as bools: 5x faster nonzero
        if candidates.size == 0:
            return candidates, np.empty(0, dtype=np.uint64)
        wanted = queries.take(candidates)
        lines = self._table.take(self._bucket(wanted), axis=0)  # one cache line per candidate
        matches = lines[:, :_SLOTS] == wanted[:, None]
        # A key sits in at most one slot: the four bools of a row read as one uint32 say "any slot
        # matched", argmax says which (both much cheaper than a reduction along axis 1).
        in_slot = matches.view(np.uint32).ravel() != 0
        in_slot &= wanted != _EMPTY  # the empty-slot marker itself is never a key
        payloads = lines.ravel().take(np.arange(0, lines.size, 2 * _SLOTS) + _SLOTS + matches.argmax(axis=1))
        found = in_slot
        if self._overflow_keys.size:
            spill = np.flatnonzero(~in_slot)
            at = np.minimum(np.searchsorted(self._overflow_keys, wanted[spill]), self._overflow_keys.size - 1)
            hit = self._overflow_keys[at] == wanted[spill]
            if hit.any():
                found = in_slot.copy()
                found[spill[hit]] = True
                payloads[spill[hit]] = self._overflow_payloads[at[hit]]
        return candidates[found], payloads[found]
