"""The register's compiled membership loop: `BlockedBitset.contains_many` in one pass over the queries.

Theory of operation
-------------------
The numpy version of the probe (`_batch.BlockedBitset.contains_many`) makes about ten passes over a
batch (shift, clamp, directory gather, widen, shift, or, bitset gather, shift, and, compact the sparse
rows, then the hash table's own passes); each writes a temporary the size of the batch, so at 1.5M
numbers it ran ~2x the dense-bitset floor. `probe_register_into` reads the same arrays
(`BlockedBitset.parts`) in four loops, each with independent loads only, so many cache misses overlap:

1. directory gathers (one per query, written to a small slot array);
2. bitset gathers and bit tests, written straight into the result; the rows whose block is thin (slot
   1) are appended to a list without a branch (a 0/1 increment);
3. for the thin rows, their hash buckets, then the four-slot compares as selects; misses in a bucket
   flagged as overflowed are appended to a second list;
4. a binary search in the sorted overflow array for those few.

Written as one loop with a branch per query (the obvious way), it ran 1.3-2x slower: each mispredicted
branch threw away the loads in flight. An `active` mask lets the policy's batch pass skip the numbers
its caller lists already decided (they read the absent slot). `blocked_probe` is the plain membership.

The loops do exactly what the numpy passes do (same hash, same clamping of out-of-range blocks onto the
trailing absent entry), so the two agree bit for bit; `tests/test_bulk_agreement.py` holds them to it.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import compiled

__all__ = ["blocked_probe", "probe_register_into"]

# uint64 constants: numba types uint64 (op) int64 as float64, so every operand stays uint64.
_U0: Final = np.uint64(0)
_U1: Final = np.uint64(1)
_U3: Final = np.uint64(3)
_U7: Final = np.uint64(7)
_U13: Final = np.uint64(13)
_U16: Final = np.uint64(16)
_U32: Final = np.uint64(32)
_LOW: Final = np.uint64((1 << 16) - 1)
_FIBONACCI: Final = np.uint64(0x9E3779B97F4A7C15)
_SPARSE_SLOT: Final = 1
_BUCKET_SLOTS: Final = 4


@compiled
def probe_register_into(  # noqa: PLR0917 - numba kernels take their arrays positionally
    queries: NDArray[np.uint64],
    active: NDArray[np.bool_],
    found: NDArray[np.bool_],
    directory: NDArray[np.unsignedinteger],
    first_block: np.uint64,
    span: np.uint64,
    bits: NDArray[np.uint8],
    buckets: NDArray[np.uint64],
    n_buckets: np.uint64,
    empty: np.uint64,
    overflow: NDArray[np.uint64],
    overflowed: NDArray[np.bool_],
) -> None:
    """`found[i] = active[i] and queries[i] in the structure` (the arrays of `BlockedBitset.parts`)."""
    count = queries.size
    # 1. Directory gathers only: one independent load per query, many misses in flight. An inactive
    #    query reads the absent slot (all-zero bits), a select rather than a branch.
    slots = np.empty(count, dtype=np.uint32)
    for i in range(count):
        block = (queries[i] >> _U16) - first_block  # below-range blocks wrap to huge values: one min clamps
        block = block if block < span else span
        slots[i] = directory[block] if active[i] else 0
    # 2. Bitset gathers and bit tests; thin-block rows compacted without a branch.
    thin_rows = np.empty(count, dtype=np.intp)
    thin = 0
    for i in range(count):
        query = queries[i]
        slot = np.uint64(slots[i])
        byte = (slot << _U13) | ((query & _LOW) >> _U3)
        found[i] = ((np.uint64(bits[byte]) >> (query & _U7)) & _U1) != _U0
        thin_rows[thin] = i
        thin += int(slot == _SPARSE_SLOT)
    # 3. Thin rows: their buckets first, then the four-slot compares as selects; misses in an overflowed
    #    bucket are set aside (a branch here mispredicted and threw away the loads in flight).
    bases = np.empty(thin, dtype=np.intp)
    for t in range(thin):
        query = queries[thin_rows[t]]
        bases[t] = int((((query * _FIBONACCI) >> _U32) * n_buckets) >> _U32)
    spilled = np.empty(thin, dtype=np.intp)
    spills = 0
    for t in range(thin):
        i = thin_rows[t]
        query = queries[i]
        bucket = bases[t]
        base = bucket * _BUCKET_SLOTS
        hit = (
            (buckets[base] == query)
            | (buckets[base + 1] == query)
            | (buckets[base + 2] == query)
            | (buckets[base + 3] == query)
        )
        hit &= query != empty
        found[i] = hit
        spilled[spills] = i
        spills += int((not hit) & overflowed[bucket])
    # 4. The rare rest: the sorted overflow array.
    for s in range(spills):
        i = spilled[s]
        query = queries[i]
        at = np.searchsorted(overflow, query)
        found[i] = at < overflow.size and overflow[at] == query


@compiled
def blocked_probe(  # noqa: PLR0917 - numba kernels take their arrays positionally
    queries: NDArray[np.uint64],
    directory: NDArray[np.unsignedinteger],
    first_block: np.uint64,
    span: np.uint64,
    bits: NDArray[np.uint8],
    buckets: NDArray[np.uint64],
    n_buckets: np.uint64,
    empty: np.uint64,
    overflow: NDArray[np.uint64],
    overflowed: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """A new bool array: membership of every query (see `probe_register_into`)."""
    found = np.empty(queries.size, dtype=np.bool_)
    active = np.ones(queries.size, dtype=np.bool_)
    probe_register_into(
        queries, active, found, directory, first_block, span, bits, buckets, n_buckets, empty, overflow,
        overflowed,
    )  # fmt: skip
    return found
