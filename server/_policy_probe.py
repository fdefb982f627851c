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
Built once per list version (in numpy); immutable afterwards.

The probe itself is one compiled loop (`probe_kernel`, numba, GIL released), because in numpy it took
about twenty passes over the batch and cost as much as the register check it rides along with. The loop
is arranged for memory-level parallelism, not for brevity: a first pass compacts the filter's candidates
without a branch, a second computes their buckets and a third touches each bucket's line (independent loads,
many in flight), a fourth compares the four slots with selects and appends hits without a branch, and only
misses in full buckets are searched in the overflow array. Written the obvious way (test, branch, compare
in one loop) it was three times slower: every mispredicted filter branch threw away the loads in flight.
Other compiled loops (`_policy_overlay`) call `probe_kernel` with `KeyProbe.parts`.
"""

from __future__ import annotations

from typing import Any, Final

import numba
import numpy as np
from numpy.typing import NDArray

__all__ = ["KeyProbe", "probe_kernel"]

_U64 = np.uint64
_FILTER_HASH: Final = _U64(0x9E3779B97F4A7C15)  # Fibonacci hashing: golden-ratio multiplier
_TABLE_HASH: Final = _U64(0xC2B2AE3D27D4EB4F)  # a different odd multiplier, independent of the filter's
_FILTER_BITS_PER_KEY: Final = 16  # at least; rounded up to a power of two: false positives 2-6%
_MIN_FILTER_BITS: Final = 1 << 16
_SLOTS: Final = 4  # 4 keys + 4 payloads = 64 bytes; `find` also reads the 4 match bools as one uint32
_KEYS_PER_BUCKET: Final = 2.0  # average load; ~5% of buckets overflow, ~1.7% of keys spill
_LINE_BYTES: Final = 64
_EMPTY: Final = _U64(2**64 - 1)  # never a phone-number key (E.164 has at most 15 digits)
# uint64 shift amounts and masks for the compiled loop: numba types uint64 (op) int64 as float64.
_U1, _U3, _U7, _U32 = _U64(1), _U64(3), _U64(7), _U64(32)
_ROW: Final = 2 * _SLOTS


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
        self._table = table.reshape(-1)  # flat: the compiled loop indexes bucket * _ROW + slot
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

    @property
    def parts(self) -> tuple[Any, ...]:
        """The arrays and scalars `probe_kernel` takes after the queries, in its order."""
        return (
            self._filter,
            self._filter_shift,
            self._table,
            self._n_buckets,
            self._overflow_keys,
            self._overflow_payloads,
        )

    def find(self, queries: NDArray[np.uint64]) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
        """(positions in `queries` that are keys, ascending; their payloads)."""
        positions: NDArray[np.intp]
        payloads: NDArray[np.uint64]
        positions, payloads = probe_kernel(np.ascontiguousarray(queries, dtype=np.uint64), *self.parts)
        if positions.size > 1 and bool((positions[1:] < positions[:-1]).any()):  # overflow hits come last
            order = np.argsort(positions, kind="stable")
            positions, payloads = positions[order], payloads[order]
        return positions, payloads


@numba.njit(nogil=True, cache=True)
def probe_kernel(  # noqa: PLR0917 - numba kernels take their arrays positionally
    queries: NDArray[np.uint64],
    filter_bits: NDArray[np.uint8],
    filter_shift: np.uint64,
    table: NDArray[np.uint64],
    n_buckets: np.uint64,
    overflow_keys: NDArray[np.uint64],
    overflow_payloads: NDArray[np.uint64],
) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
    """(positions of the queries that are keys, their payloads): table hits in ascending order, then
    overflow hits. `table` is the flat bucket array (`_ROW` uint64 per bucket: keys, then payloads)."""
    count = queries.size
    positions = np.empty(count, dtype=np.intp)
    # 1. The filter: candidates compacted without a branch (a 0/1 increment, not an if).
    candidates = 0
    for i in range(count):
        slot = (queries[i] * _FILTER_HASH) >> filter_shift
        positions[candidates] = i
        candidates += int((filter_bits[slot >> _U3] >> (slot & _U7)) & _U1)
    # 2. Each candidate's bucket; then a loop that only touches each bucket's line: independent loads,
    #    so many misses overlap (fused into one loop, or left out, the probe is 1.5-2x slower).
    bases = np.empty(candidates, dtype=np.intp)
    for c in range(candidates):
        key = queries[positions[c]]
        bases[c] = np.intp((((key * _TABLE_HASH) >> _U32) * n_buckets) >> _U32) * _ROW
    touched = _U64(0)
    for c in range(candidates):
        touched ^= table[bases[c]]
    # 3. Compare the four slots with selects; hits are appended in place (hits <= c), misses in a full
    #    bucket are set aside for the overflow array.
    payloads = np.empty(candidates, dtype=np.uint64)
    spilled = np.empty(candidates, dtype=np.intp)
    hits = 0
    spills = 0
    for c in range(candidates):
        i = positions[c]
        key = queries[i]
        base = bases[c]
        slot = 4
        slot = 3 if table[base + 3] == key else slot
        slot = 2 if table[base + 2] == key else slot
        slot = 1 if table[base + 1] == key else slot
        slot = 0 if table[base] == key else slot
        # `&`, not `and`: no short-circuit branch. The empty-slot marker itself is never a key.
        found = (slot < _SLOTS) & (key != _EMPTY)
        positions[hits] = i
        payloads[hits] = table[base + _SLOTS + (slot & 3)]
        hits += int(found)
        spilled[spills] = i
        spills += int((slot == _SLOTS) & (table[base + _SLOTS - 1] != _EMPTY))
    # 4. The rare misses whose bucket was full: the sorted overflow array.
    for s in range(spills):
        i = spilled[s]
        key = queries[i]
        at = np.searchsorted(overflow_keys, key)
        if at < overflow_keys.size and overflow_keys[at] == key:
            positions[hits] = i
            payloads[hits] = overflow_payloads[at]
            hits += 1
    if touched == _U64(1) and hits < 0:  # never true: keeps step 2's loads from being optimised away
        hits = 0
    return positions[:hits], payloads[:hits]
