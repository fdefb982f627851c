"""The register's compiled membership loop: `BlockedBitset.contains_many` in one pass over the queries.

Theory of operation
-------------------
The numpy version of the probe (`_batch.BlockedBitset.contains_many`) makes about ten passes over a
batch (shift, clamp, directory gather, widen, shift, or, bitset gather, shift, and, compact the sparse
rows, then the hash table's own passes); each writes a temporary the size of the batch, so at 1.5M
numbers it ran ~2x the dense-bitset floor. `blocked_probe` reads the same arrays (`BlockedBitset.parts`)
and answers in two loops:

1. Per query: directory gather, bitset gather, bit test, written straight into the result. The query's
   slot is 1 (sparse) for a thin block; those positions are appended to a list without a branch (a 0/1
   increment), so mispredictions do not throw away the loads in flight.
2. Only the sparse positions: Fibonacci hash onto a 4-slot bucket, compare the four slots with
   selects, and, for a full bucket flagged as overflowed, a binary search in the sorted overflow array.

Both loops do exactly what the numpy passes do (same hash, same clamping of out-of-range blocks onto the
trailing absent entry), so the two agree bit for bit; `tests/test_bulk_agreement.py` holds them to it.
`dense_floor_probe` is the bench's compiled reference: the same work a dense bitset over the whole key
span would cost (shift, gather, bit test), nothing else.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import compiled

__all__ = ["blocked_probe", "blocked_probe_into", "dense_floor_probe"]

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
def blocked_probe_into(  # noqa: PLR0917 - numba kernels take their arrays positionally
    queries: NDArray[np.uint64],
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
    """`found[i] = queries[i] in the structure` (the arrays of `BlockedBitset.parts`, directory direct)."""
    count = queries.size
    sparse = np.empty(count, dtype=np.intp)
    thin = 0
    for i in range(count):
        query = queries[i]
        block = (query >> _U16) - first_block  # below-range blocks wrap to huge values: one min clamps both
        block = block if block < span else span
        slot = np.uint64(directory[block])
        byte = (slot << _U13) | ((query & _LOW) >> _U3)
        found[i] = ((np.uint64(bits[byte]) >> (query & _U7)) & _U1) != _U0
        sparse[thin] = i
        thin += int(slot == _SPARSE_SLOT)
    has_overflow = overflow.size > 0
    for t in range(thin):
        i = sparse[t]
        query = queries[i]
        bucket = int((((query * _FIBONACCI) >> _U32) * n_buckets) >> _U32)
        base = bucket * _BUCKET_SLOTS
        hit = (
            (buckets[base] == query)
            | (buckets[base + 1] == query)
            | (buckets[base + 2] == query)
            | (buckets[base + 3] == query)
        )
        hit &= query != empty
        if has_overflow and not hit and overflowed[bucket]:
            at = np.searchsorted(overflow, query)
            hit = at < overflow.size and overflow[at] == query
        found[i] = hit


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
    """A new bool array: membership of every query (see `blocked_probe_into`)."""
    found = np.empty(queries.size, dtype=np.bool_)
    blocked_probe_into(
        queries, found, directory, first_block, span, bits, buckets, n_buckets, empty, overflow, overflowed
    )
    return found


@compiled
def dense_floor_probe(
    queries: NDArray[np.uint64], bitset: NDArray[np.uint8], low: np.uint64, mask: np.uint64
) -> NDArray[np.bool_]:
    """Membership in one dense bitset over the key span (the benchmark's compiled floor)."""
    found = np.empty(queries.size, dtype=np.bool_)
    for i in range(queries.size):
        offset = (queries[i] - low) & mask
        found[i] = ((np.uint64(bitset[offset >> _U3]) >> (offset & _U7)) & _U1) != _U0
    return found
