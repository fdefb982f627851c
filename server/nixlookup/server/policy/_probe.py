"""`KeyProbe`: which numbers of a batch are in a small set of keys, and the 64-bit payload of each.

A caller's lists (say 600k numbers) are far smaller than the register, yet an exact structure for them
still spans megabytes, so probing it for every number of a batch costs a cache miss per number, about as
much as the register check itself. Most numbers of a batch are on none of the caller's lists, so the probe
answers in two steps:

1. A one-hash Bloom filter, a bitset of 8-16 bits per key (1 MB for 600k keys), rules out ~93% of the
   misses with one load and a few integer operations. It is sized to stay in a core's L2 cache while the
   register check sweeps the L3: at 2 MB it was evicted between batches, and the probe took 10 us (of
   ~60) more per 10k numbers than with 1 MB, despite fewer false positives.
2. The candidates that pass go to a bucketed hash table whose bucket is exactly one 64-byte cache line,
   so a hit costs one cache miss. The table shares the cache with the register the same batch is checked
   against, so it is kept small: quotienting makes a slot 8 bytes instead of 16 (18 MB -> 7.7 MB for
   600k keys). A key's bucket is `key % n_buckets` (a prime), so the slot only stores the quotient
   `key // n_buckets` (+1, as uint32; 0 marks an empty slot) and a uint32 index into the distinct
   payloads (a caller's lists have few: one per combination of flags and end days). A line holds 8
   slots, at 5 keys per bucket on average: ~13 bytes per key. Keys that did not fit their bucket
   (~2.5%), and keys whose quotient needs more than 32 bits (not Swedish numbers), sit in a small sorted
   overflow array, searched only for candidates that missed a full bucket or cannot be quotiented.

The answer is exact: the filter has false positives (the table removes them), never false negatives.
Built once per list version (in numpy); immutable afterwards.

The probe itself is a compiled loop: `_policy_kernels.probe_kernel` reads the arrays `parts` lists.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["KeyProbe"]

_U64 = np.uint64
_FILTER_HASH: Final = _U64(0x9E3779B97F4A7C15)  # Fibonacci hashing: golden-ratio multiplier
_FILTER_BITS_PER_KEY: Final = 8  # at least; rounded up to a power of two: false positives 6-12%
_MIN_FILTER_BITS: Final = 1 << 16
_SLOTS: Final = 8  # 8 uint32 quotients + 8 uint32 payload indexes = one 64-byte line
_ROW: Final = 2 * _SLOTS
_KEYS_PER_BUCKET: Final = 5.0  # average load: ~13% of buckets are full, ~2.5% of keys spill
_LINE_BYTES: Final = 64
_EMPTY_SLOT: Final = 0  # stored quotients are quotient + 1
_NO_QUOTIENT: Final = 2**32 - 1  # above every stored value: a query that cannot be quotiented
# uint64 shift amounts and masks for the compiled loop: numba types uint64 (op) int64 as float64.
_U1, _U3, _U7 = _U64(1), _U64(3), _U64(7)
_U_NO_QUOTIENT = _U64(_NO_QUOTIENT)


def _cache_aligned(rows: int, columns: int) -> NDArray[np.uint32]:
    """A zeroed (rows, columns) uint32 array whose rows start on 64-byte boundaries."""
    raw = np.zeros(rows * columns + _LINE_BYTES // 4, dtype=np.uint32)
    skip = (-raw.ctypes.data % _LINE_BYTES) // 4
    return raw[skip : skip + rows * columns].reshape(rows, columns)


def _prime_at_least(n: int) -> int:
    """The smallest prime >= n (n is at most a few hundred thousand: trial division is instant)."""
    candidate = max(2, n)
    while any(candidate % d == 0 for d in range(2, int(candidate**0.5) + 1)):
        candidate += 1
    return candidate


class KeyProbe:
    """Exact membership of uint64 keys, each with a uint64 payload, answered for whole batches."""

    __slots__ = (
        "_filter",
        "_filter_shift",
        "_n_buckets",
        "_overflow_keys",
        "_overflow_payloads",
        "_payload_values",
        "_table",
    )

    def __init__(self, keys: NDArray[np.uint64], payloads: NDArray[np.uint64]) -> None:
        """`keys` unique (any order), `payloads` aligned with them."""
        keys = np.asarray(keys, dtype=np.uint64)
        payloads = np.asarray(payloads, dtype=np.uint64)
        count = int(keys.size)
        filter_bits = max(_MIN_FILTER_BITS, 1 << max(0, count * _FILTER_BITS_PER_KEY - 1).bit_length())
        self._filter_shift = _U64(64 - (filter_bits.bit_length() - 1))
        bits = np.zeros(filter_bits, dtype=np.bool_)
        bits[self._filter_slot(keys)] = True
        self._filter = np.packbits(bits, bitorder="little")

        # A prime bucket count: `key % n` spreads arithmetic runs of numbers evenly over the buckets.
        n_buckets = _prime_at_least(int(count / _KEYS_PER_BUCKET) + 1)
        self._n_buckets = _U64(n_buckets)
        bucket = (keys % self._n_buckets).astype(np.intp)
        stored = keys // self._n_buckets + _U1
        quotientable = stored < _U_NO_QUOTIENT
        # Never empty: an empty slot's payload index (0) must still point somewhere.
        self._payload_values = _sorted_distinct(payloads) if count else np.zeros(1, dtype=np.uint64)
        payload_index = np.searchsorted(self._payload_values, payloads).astype(np.uint32)

        order = np.argsort(bucket, kind="stable")
        order = order[quotientable[order]]
        sorted_buckets = bucket[order]
        group_start = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
        rank = np.arange(order.size) - np.repeat(group_start, np.diff(np.r_[group_start, order.size]))
        fits = rank < _SLOTS
        table = _cache_aligned(n_buckets, _ROW)
        table[sorted_buckets[fits], rank[fits]] = stored[order[fits]].astype(np.uint32)
        table[sorted_buckets[fits], _SLOTS + rank[fits]] = payload_index[order[fits]]
        self._table = table.reshape(-1)  # flat: the compiled loop indexes bucket * _ROW + slot
        in_table = np.zeros(count, dtype=np.bool_)
        in_table[order[fits]] = True
        spilled = np.flatnonzero(~in_table)
        by_key = np.argsort(keys[spilled])
        self._overflow_keys = keys[spilled][by_key]
        self._overflow_payloads = payloads[spilled][by_key]

    def _filter_slot(self, keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
        # The multiply wraps modulo 2**64 by design; the top bits are the best-mixed ones.
        return (keys * _FILTER_HASH) >> self._filter_shift

    @property
    def nbytes(self) -> int:
        return int(
            self._filter.nbytes
            + self._table.nbytes
            + self._payload_values.nbytes
            + self._overflow_keys.nbytes
            + self._overflow_payloads.nbytes
        )

    @property
    def overflow_count(self) -> int:
        """How many keys live in the overflow array (spilled from a full bucket, or not quotientable)."""
        return int(self._overflow_keys.size)

    @property
    def parts(self) -> tuple[Any, ...]:
        """The arrays and scalars `probe_kernel` takes after the queries, in its order."""
        return (
            self._filter,
            self._filter_shift,
            self._table,
            self._n_buckets,
            self._payload_values,
            self._overflow_keys,
            self._overflow_payloads,
        )

    def find(self, queries: NDArray[np.uint64]) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
        """(positions in `queries` that are keys, ascending; their payloads)."""
        from nixlookup.server.policy._kernels import probe_kernel  # numba loads on first use

        positions: NDArray[np.intp]
        payloads: NDArray[np.uint64]
        positions, payloads = probe_kernel(np.ascontiguousarray(queries, dtype=np.uint64), *self.parts)
        if positions.size > 1 and bool((positions[1:] < positions[:-1]).any()):  # overflow hits come last
            order = np.argsort(positions, kind="stable")
            positions, payloads = positions[order], payloads[order]
        return positions, payloads


def _sorted_distinct(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    ordered = np.sort(values)  # np.unique is far slower on uint64 (numpy 2.4)
    keep = np.r_[True, ordered[1:] != ordered[:-1]] if ordered.size else np.empty(0, dtype=np.bool_)
    distinct: NDArray[np.uint64] = ordered[keep]
    return distinct
