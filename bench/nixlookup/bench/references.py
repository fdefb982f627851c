"""In-process references the lookup core is measured against, in the same run on the same queries.

- `PythonSetLookup`: what a team writes first, ``key in set`` in a Python loop over the queries. The
  ceiling nixlookup's batch path must beat by a wide margin.
- `DenseBitsetFloor`: one bit per possible key and one vectorised probe per query, the least work numpy can
  do for a membership test: the floor. Swedish keys span ~4.6e10 values (a 5.8 GB bitset), so the bitset is
  folded onto at most `MAX_FLOOR_BITS` bits (512 MiB) by masking the key's offset. Every probe still is one
  random access into a bitset far larger than any CPU cache, exactly the work an unfolded one does (the
  unfolded one would only add TLB misses), so the timing stays a floor; the folding can produce false
  positives, which is why it is a yardstick and not a contender. `false_positives` counts them.
"""

from __future__ import annotations

import sys

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAX_FLOOR_BITS", "DenseBitsetFloor", "PythonSetLookup"]

MAX_FLOOR_BITS = 1 << 32  # 512 MiB of bits: far beyond any cache, small enough for a shared 24 GB machine


class PythonSetLookup:
    """Membership by ``key in set`` for each query, in a Python loop."""

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        self._members = frozenset(keys.tolist())

    @property
    def nbytes(self) -> int:
        """The set's table plus its int objects (what the keys cost a Python process)."""
        return sys.getsizeof(self._members) + sum(sys.getsizeof(key) for key in self._members)

    def contains_many(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        members = self._members
        return np.fromiter((key in members for key in queries.tolist()), dtype=np.bool_, count=queries.size)


class DenseBitsetFloor:
    """One bit per (folded) key offset; `contains_many` is shift, gather, shift, and."""

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        self._low = np.uint64(keys.min()) if keys.size else np.uint64(0)
        span = int(keys.max()) - int(self._low) + 1 if keys.size else 1
        bits = min(MAX_FLOOR_BITS, 1 << max(6, (span - 1).bit_length()))
        self.exact_span = span <= bits
        self._mask = np.uint64(bits - 1)
        self._bitset = np.zeros(bits // 8, dtype=np.uint8)
        offsets = (keys - self._low) & self._mask
        np.bitwise_or.at(
            self._bitset,
            (offsets >> np.uint64(3)).astype(np.intp),
            np.left_shift(1, offsets & np.uint64(7)).astype(np.uint8),
        )

    @property
    def nbytes(self) -> int:
        return int(self._bitset.nbytes)

    def contains_many(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        offsets = (queries - self._low) & self._mask
        probed = self._bitset[offsets >> np.uint64(3)]
        hit: NDArray[np.bool_] = ((probed >> (offsets & np.uint64(7)).astype(np.uint8)) & np.uint8(1)).view(
            np.bool_
        )
        return hit

    def false_positives(self, queries: NDArray[np.uint64], truth: NDArray[np.bool_]) -> int:
        """How many queries the folded bitset calls present that are not (0 when the span fits)."""
        return int(np.count_nonzero(self.contains_many(queries) & ~truth))
