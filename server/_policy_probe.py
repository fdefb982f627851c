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
   so a hit costs one cache miss. The table is kept small because it shares the cache with the register
   the same batch is checked against (with 32 bytes per key, the two together overflowed the L3 and the
   register check slowed by a third). Quotienting makes a slot 8 bytes: a key's bucket is
   `key % n_buckets` (a prime), so the slot only stores the quotient `key // n_buckets` (+1, as uint32;
   0 marks an empty slot) and a uint32 index into the few distinct payloads. A line holds 8 slots, at 5
   keys per bucket on average: ~13 bytes per key. Keys that did not fit their bucket (~2.5%), and keys
   whose quotient needs more than 32 bits (not Swedish numbers), sit in a small sorted overflow array,
   searched only for candidates that missed a full bucket or cannot be quotiented.

The answer is exact: the filter has false positives (the table removes them), never false negatives.
Built once per list version (in numpy); immutable afterwards.

The probe itself is one compiled loop (`probe_kernel`, numba), because in numpy it took
about twenty passes over the batch and cost as much as the register check it rides along with. The loop
is arranged for memory-level parallelism, not for brevity: a first pass compacts the filter's candidates
without a branch, a second computes their buckets and a third touches each bucket's line (independent
loads, many in flight), a fourth compares the eight slots with selects and appends hits without a branch,
and only the rare candidates above go to the overflow array. Written the obvious way (test, branch,
compare in one loop) it was three times slower: every mispredicted filter branch threw away the loads in
flight. Other compiled loops (`_policy_overlay`, `_policy_facts`) call `probe_kernel` with
`KeyProbe.parts`.

The loops keep the GIL (numba's default). Released (`nogil=True`), the batch's thread had to win it back
from the server's other threads after every loop, and bulk with a caller ran ~5-10% slower end to end on
2 cores; the loops take ~50-80 us per 10k numbers, well under the interpreter's 5 ms switch interval.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import compiled

__all__ = ["KeyProbe", "probe_kernel"]

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


@compiled
def probe_kernel(  # noqa: PLR0917 - numba kernels take their arrays positionally
    queries: NDArray[np.uint64],
    filter_bits: NDArray[np.uint8],
    filter_shift: np.uint64,
    table: NDArray[np.uint32],
    n_buckets: np.uint64,
    payload_values: NDArray[np.uint64],
    overflow_keys: NDArray[np.uint64],
    overflow_payloads: NDArray[np.uint64],
) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
    """(positions of the queries that are keys, their payloads): table hits in ascending order, then
    overflow hits. `table` is the flat bucket array (`_ROW` uint32 per bucket: quotients + 1, then
    payload indexes)."""
    count = queries.size
    positions = np.empty(count, dtype=np.intp)
    # 1. The filter: candidates compacted without a branch (a 0/1 increment, not an if).
    candidates = 0
    for i in range(count):
        slot = (queries[i] * _FILTER_HASH) >> filter_shift
        positions[candidates] = i
        candidates += int((filter_bits[slot >> _U3] >> (slot & _U7)) & _U1)
    # 2. Each candidate's bucket and stored quotient; then a loop that only touches each bucket's line:
    #    independent loads, so many misses overlap (fused into one loop, or left out, the probe is
    #    1.5-2x slower).
    bases = np.empty(candidates, dtype=np.intp)
    wanted = np.empty(candidates, dtype=np.uint32)
    for c in range(candidates):
        key = queries[positions[c]]
        bases[c] = int(key % n_buckets) * _ROW
        stored = key // n_buckets + _U1
        wanted[c] = stored if stored < _U_NO_QUOTIENT else _U_NO_QUOTIENT
    touched = 0
    for c in range(candidates):
        touched ^= table[bases[c]]
    # 3. Compare the eight slots with selects; hits are appended in place (hits <= c). Misses in a full
    #    bucket, and queries that cannot be quotiented, are set aside for the overflow array.
    payloads = np.empty(candidates, dtype=np.uint64)
    spilled = np.empty(candidates, dtype=np.intp)
    hits = 0
    spills = 0
    for c in range(candidates):
        base = bases[c]
        value = wanted[c]
        slot = _SLOTS
        for s in range(_SLOTS - 1, -1, -1):
            slot = s if table[base + s] == value else slot
        found = slot < _SLOTS
        positions[hits] = positions[c]
        payloads[hits] = payload_values[table[base + _SLOTS + (slot & (_SLOTS - 1))]]
        spilled[spills] = positions[c]
        hits += int(found)
        spills += int(
            (slot == _SLOTS) & ((table[base + _SLOTS - 1] != _EMPTY_SLOT) | (value == _NO_QUOTIENT))
        )
    # 4. The rare rest: the sorted overflow array.
    for s in range(spills):
        i = spilled[s]
        key = queries[i]
        at = np.searchsorted(overflow_keys, key)
        if at < overflow_keys.size and overflow_keys[at] == key:
            positions[hits] = i
            payloads[hits] = overflow_payloads[at]
            hits += 1
    if touched == 1 and hits < 0:  # never true: keeps step 2's loads from being optimised away
        hits = 0
    return positions[:hits], payloads[:hits]
